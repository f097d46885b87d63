package main

import (
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

func fakeReconnects() *results {
	cfg, _ := parseFlags([]string{"-only", "reconnects", "-clients", "4", "-reconnect-restarts", "2"}, io.Discard)
	res := &results{cfg: cfg, command: "go run ./compare -only reconnects", commit: "0123456789ab", began: time.Now(),
		machine: machine{nproc: 2, cpu: "a CPU", kernel: "6.18", goVer: "go1.26"}}
	res.reconnects = []*reconnectRun{
		{Subject: "handoff", Mode: rcPlain, Round: 1, Clients: 4, Restarts: 2, Seen: 2, Requests: 1000, Dials: 4,
			Kernel: kernelCount{Conns: 4}},
		{Subject: "handoff", Mode: rcTLS, Round: 1, Clients: 4, Restarts: 2, Seen: 2, Requests: 900, Dials: 4,
			Kernel: kernelCount{Conns: 3, Missed: 1, MissedLongest: 2 * time.Millisecond}, UpstreamDials: 4, Connected: 4, HandshakesAll: 4,
			TLSParams: "TLS 1.3, X, Y"},
		{Subject: "tableflip", Mode: rcPlain, Round: 1, Clients: 4, Restarts: 2, Seen: 2, Requests: 1000, Failed: 8,
			FirstFailure: "POST on a reused=true connection: EOF", Dials: 12, Connected: 12, Kernel: kernelCount{Conns: 11, Reads: 9}},
		{Subject: "tableflip", Mode: rcTLS, Round: 1, Clients: 4, Restarts: 2, Seen: 1, Requests: 800, Failed: 8, Dials: 12,
			Kernel: kernelCount{Conns: 12}, UpstreamDials: 12, Handshakes: 8, HandshakesAll: 12,
			ServerCPU: 8 * time.Millisecond, ClientCPU: 10 * time.Millisecond},
		{Subject: "?", Mode: rcPlain, Round: 1, Err: "no start\nat all"},
	}
	return res
}

// TestReconnectsReport: reconnects per restart is (dials − clients) ÷
// restarts; a kernel count that disagrees is marked and explained; the
// TLS table divides handshake CPU by restarts and by handshakes.
func TestReconnectsReport(t *testing.T) {
	res := fakeReconnects()
	var b strings.Builder
	writeReport(&b, res)
	md := b.String()
	for _, re := range []string{
		"at commit `0123456789ab`",
		`\| handoff +\| plain \| +1 \| +2 of 2 \| +1,000 \| +0 \| +4 \| +4 \| +0\.00 \|`,
		`\| handoff +\| tls +\| +1 \| +2 of 2 \| +900 \| +0 \| +4 \| +3 ≠ \| +0\.00 \|`,
		`\| tableflip +\| plain \| +1 \| +2 of 2 \| +1,000 \| +8 \| +12 \| +11 ≠ \| +4\.00 \|`,
		`\| tableflip +\| tls +\| +1 \| +1 of 2 \| +800 \| +8 \| +12 \| +12 \| +4\.00 \|`,
		// 8 handshakes over 2 restarts: 4 per restart, 4 ms and 5 ms of CPU each, 1 ms per handshake
		`\| tableflip +\| +1 \| +8 \| +4\.00 \| +4\.00 ms \| +5\.00 ms \| +1\.00 ms \| +12 \|`,
		`\| handoff +\| +1 \| +0 \| +0\.00 \| +0\.00 ms \| +0\.00 ms \| +– \| +4 \|`,
		regexp.QuoteMeta("tableflip (plain, round 1): the clients counted 12 dials (12 connected), the kernel showed 11 connections"),
		regexp.QuoteMeta("tableflip (plain, round 1): first failed request: POST on a reused=true connection: EOF."),
		`\? \(plain, round 1\): error: no start at all\.`,
		"TLS 1.3, X, Y",
		regexp.QuoteMeta("handoff (tls, round 1): the tunnel counted 4 dials (4 connected), the kernel showed 3 connections; the 1 it missed each lived 2ms or less"),
		"-reconnect-restarts 2",
	} {
		if !regexp.MustCompile(re).MatchString(md) {
			t.Errorf("report does not match %s", re)
		}
	}
	if strings.Contains(md, "handoff (plain, round 1): the clients counted") || strings.Contains(md, "## 2. Restarts") {
		t.Errorf("report has a disagreement that is none, or a section that did not run")
	}
	checkTables(t, md)
}

func TestReconnectsJSON(t *testing.T) {
	res := fakeReconnects()
	var b strings.Builder
	if err := writeReconnectsJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Command string
		Commit  string
		Runs    []reconnectRun
	}
	if err := json.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Commit != "0123456789ab" || len(doc.Runs) != 5 || doc.Runs[3].ServerCPU != 8*time.Millisecond ||
		doc.Runs[2].Kernel.Conns != 11 || doc.Runs[1].Kernel.MissedLongest != 2*time.Millisecond || doc.Runs[4].Err == "" {
		t.Errorf("decoded %+v", doc)
	}
}
