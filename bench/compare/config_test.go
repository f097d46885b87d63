package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := "-only throughput,restarts,upgrades,spawn,reap,footprint -rounds 2 -clients 64 -workers 2 -window 4s -steady 2s -restarts 20 -upgrades 10 -every 1s -spawn 100 -footprint 10,100,1000 -paced 500 -flood 5000 -limit 9m30s"
	if got := cfg.flags(); got != want {
		t.Errorf("defaults:\n got %s\nwant %s", got, want)
	}
	cfg, err = parseFlags([]string{"-only", "restarts, spawn,restarts", "-footprint", "3", "-every", "300ms", "-no-install"}, io.Discard)
	if err != nil || !slices.Equal(cfg.only, []string{scRestarts, scSpawn}) || !slices.Equal(cfg.footprint, []int{3}) ||
		cfg.every != 300*time.Millisecond || !cfg.noInstall || !cfg.runs(scSpawn) || cfg.runs(scReap) {
		t.Errorf("parsed %+v, %v", cfg, err)
	}
	for _, c := range []struct {
		args   []string
		out    string
		rounds int
	}{
		{nil, "results", 2},
		{[]string{"-only", "restarts"}, "results", 2},
		{[]string{"-only", "reconnects"}, "results/reconnects", 1},
		{[]string{"-only", "reconnects", "-rounds", "3"}, "results/reconnects", 3},
		{[]string{"-only", "traffic"}, "results/traffic", 2},
		{[]string{"-only", "traffic,reconnects"}, "results", 2},
		{[]string{"-only", "reconnects", "-out", "x"}, "x", 1},
	} {
		cfg, err := parseFlags(c.args, io.Discard)
		if err != nil || cfg.out != c.out || cfg.rounds != c.rounds {
			t.Errorf("parseFlags(%q): out %q, rounds %d, %v; want %q, %d", c.args, cfg.out, cfg.rounds, err, c.out, c.rounds)
		}
	}
	for _, bad := range [][]string{
		{"-only", "everything"}, {"-only", ""}, {"-footprint", "0"}, {"-footprint", "a"}, {"-rounds", "0"},
		{"-clients", "0"}, {"-workers", "65"}, {"-window", "0s"}, {"-every", "100ms"}, {"-restarts", "0"},
		{"-spawn", "0"}, {"-reconnect-restarts", "0"}, {"-flood", "0"}, {"-paced", "0"}, {"-limit", "0s"}, {"-out", ""}, {"stray"}, {"-nope"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}
