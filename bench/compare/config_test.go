package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := "-only throughput,restarts,upgrades,spawn,reap,footprint -rounds 2 -clients 64 -workers 2 -window 4s -steady 2s -restarts 10 -upgrades 10 -every 1s -pace completion -spawn 100 -footprint 10,100,1000 -paced 500 -flood 5000 -limit 9m30s"
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
		{nil, "results-20261205-072900-abc", 2},
		{[]string{"-only", "restarts"}, "results-20261205-072900-abc", 2},
		{[]string{"-only", "reconnects"}, "results-20261205-072900-abc-reconnects", 1},
		{[]string{"-only", "reconnects", "-rounds", "3"}, "results-20261205-072900-abc-reconnects", 3},
		{[]string{"-only", "traffic"}, "results-20261205-072900-abc-traffic", 2},
		{[]string{"-only", "traffic,reconnects"}, "results-20261205-072900-abc", 2},
		{[]string{"-only", "reconnects", "-out", "x"}, "x", 1},
	} {
		cfg, err := parseFlags(c.args, io.Discard)
		out := cfg.out
		if out == "" {
			out = cfg.freshOut(time.Date(2026, 12, 5, 7, 29, 0, 0, time.UTC), "abc")
		}
		if err != nil || out != c.out || cfg.rounds != c.rounds {
			t.Errorf("parseFlags(%q): out %q, rounds %d, %v; want %q, %d", c.args, out, cfg.rounds, err, c.out, c.rounds)
		}
	}
	for _, bad := range [][]string{
		{"-only", "everything"}, {"-only", ""}, {"-footprint", "0"}, {"-footprint", "a"}, {"-rounds", "0"},
		{"-clients", "0"}, {"-workers", "65"}, {"-window", "0s"}, {"-every", "100ms"}, {"-restarts", "0"},
		{"-spawn", "0"}, {"-reconnect-restarts", "0"}, {"-flood", "0"}, {"-paced", "0"}, {"-limit", "0s"}, {"-pace", "sometimes"}, {"-out", ""}, {"stray"}, {"-nope"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}

// TestCheckOut: a run may write into a new directory or over a report of
// the same scenarios, never over another report: -only traffic must not
// replace the main one.
func TestCheckOut(t *testing.T) {
	dir := t.TempDir()
	write := func(only string) {
		md := "# handoff side by side\n\n- Rounds: 2.\n- Flags in effect: `-only " + only + " -rounds 2 -clients 64`.\n"
		if err := os.WriteFile(filepath.Join(dir, "BENCHMARKS.md"), []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(args ...string) config {
		cfg, err := parseFlags(append(args, "-out", dir), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if err := parse().checkOut(); err != nil {
		t.Errorf("an empty directory: %v", err)
	}
	write(strings.Join(defaultScenarios, ","))
	if err := parse("-only", "traffic").checkOut(); err == nil {
		t.Error("-only traffic would replace the main report")
	}
	if err := parse("-only", "restarts").checkOut(); err == nil {
		t.Error("-only restarts would replace the main report")
	}
	if err := parse().checkOut(); err != nil {
		t.Errorf("the default scenarios over their own report: %v", err)
	}
	write("traffic")
	if err := parse("-only", "traffic").checkOut(); err != nil {
		t.Errorf("-only traffic over its own report: %v", err)
	}
}
