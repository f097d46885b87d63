package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// trafficServer is an in-process server answering like the subjects: 200
// on /, and /stream as its lines at once. cutAfter > 0 ends every stream
// after that many lines, without the final one; status replaces 200 on /.
type trafficServer struct {
	srv      *httptest.Server
	served   atomic.Int64
	enough   chan struct{} // closed after the tenth answer
	cutAfter int
	status   int
}

func newTrafficServer(t *testing.T, h2c bool, cutAfter, status int) *trafficServer {
	ts := &trafficServer{enough: make(chan struct{}), cutAfter: cutAfter, status: status}
	ts.srv = httptest.NewUnstartedServer(http.HandlerFunc(ts.serve))
	if h2c {
		ts.srv.Config.Protocols = new(http.Protocols)
		ts.srv.Config.Protocols.SetHTTP1(true)
		ts.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	ts.srv.Start()
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *trafficServer) serve(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if ts.served.Add(1) == 10 {
			close(ts.enough)
		}
	}()
	if r.URL.Path != "/stream" {
		w.WriteHeader(ts.status)
		fmt.Fprintln(w, "hello")
		return
	}
	body := streamBody()
	if ts.cutAfter > 0 {
		lines := strings.SplitAfter(body, "\n")
		body = strings.Join(lines[:ts.cutAfter], "")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	}
	fmt.Fprint(w, body)
}

func (ts *trafficServer) addr() string { return strings.TrimPrefix(ts.srv.URL, "http://") }

// drive runs kind against ts until the server has answered ten requests.
func (ts *trafficServer) drive(t *testing.T, kind string) *tally {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5e9))
		defer cancel()
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ts.enough:
		case <-ctx.Done():
		}
		close(stop)
	}()
	tl, err := runTraffic(ctx, kind, ts.addr(), stop)
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return tl
}

// TestTraffic: every kind of client, against a server that answers in
// full, counts its answers and no failure; h2 answers came over HTTP/2.
func TestTraffic(t *testing.T) {
	for _, kind := range trafficKinds {
		t.Run(kind, func(t *testing.T) {
			ts := newTrafficServer(t, kind == tfH2, 0, http.StatusOK)
			tl := ts.drive(t, kind)
			if tl.ok == 0 || tl.failed != 0 {
				t.Fatalf("%s: %d answered, %d failed (first: %s); want some, none", kind, tl.ok, tl.failed, tl.first)
			}
			if kind == tfStreams && (tl.complete != tl.ok || tl.cut != 0) {
				t.Errorf("streams: %d complete, %d cut of %d answered", tl.complete, tl.cut, tl.ok)
			}
		})
	}
}

// TestTrafficFailures: what a drain does wrong is counted: a non-200, a
// stream without its final line, an h2 client answered over HTTP/1.1.
func TestTrafficFailures(t *testing.T) {
	for _, tc := range []struct {
		kind      string
		h2c       bool
		cut, code int
		want      string
	}{
		{tfPollers, false, 0, http.StatusServiceUnavailable, "status 503"},
		{tfStreams, false, 7, http.StatusOK, "stream cut after 7 of 30 lines"},
		{tfH2, false, 0, http.StatusOK, ""}, // the server speaks HTTP/1.1 only
	} {
		t.Run(tc.kind, func(t *testing.T) {
			ts := newTrafficServer(t, tc.h2c, tc.cut, tc.code)
			tl := ts.drive(t, tc.kind)
			if tl.failed == 0 || tl.ok != 0 {
				t.Fatalf("%s: %d answered, %d failed; want every request failed", tc.kind, tl.ok, tl.failed)
			}
			if !strings.Contains(tl.first, tc.want) {
				t.Errorf("%s: first failure %q, want it to say %q", tc.kind, tl.first, tc.want)
			}
			if tc.kind == tfStreams && (tl.cut != tl.failed || tl.complete != 0) {
				t.Errorf("streams: %d cut, %d complete of %d failed", tl.cut, tl.complete, tl.failed)
			}
		})
	}
}

func TestTrafficLoopbackOnly(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	for _, addr := range []string{"192.0.2.1:80", "example.com:80", "nonsense"} {
		if _, err := runTraffic(t.Context(), tfPollers, addr, stop); err == nil {
			t.Errorf("runTraffic(%q) = nil error, want a refusal", addr)
		}
	}
	if _, err := runTraffic(t.Context(), "carrier-pigeon", "127.0.0.1:1", stop); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

// TestWriteTraffic: the report shows min / median / max over rounds and the
// failures per restart.
func TestWriteTraffic(t *testing.T) {
	runs := []*trafficRun{
		{kind: tfStreams, subject: "handoff", round: 1, restarts: 5, seen: 5, t: &tally{ok: 40, complete: 40}},
		{kind: tfStreams, subject: "handoff", round: 2, restarts: 5, seen: 4, t: &tally{ok: 44, complete: 44}},
		{kind: tfStreams, subject: "nginx", round: 1, restarts: 5, seen: 5, t: &tally{ok: 30, failed: 3, cut: 3, complete: 30, first: "stream cut after 4 of 30 lines"}},
		{kind: tfStreams, subject: "nginx", round: 2, restarts: 5, seen: 5, t: &tally{ok: 31, failed: 1, cut: 1, complete: 31}},
		{kind: tfH2, subject: "tableflip", round: 1, err: fmt.Errorf("starting tableflip: boom")},
	}
	var b strings.Builder
	writeTraffic(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, runs, config{rounds: 2, traffic: 5})
	out := b.String()
	for _, want := range []string{
		"| handoff |      2 | 40 / 44 / 44 |",
		"| nginx   |      2 | 30 / 31 / 31 | 1 / 3 / 3 |               0.40 |",
		"stream cut after 4 of 30 lines",
		"9 of 10",
		"### h2",
		"run error: starting tableflip: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteTrafficSkipsEmptyKinds(t *testing.T) {
	var b strings.Builder
	writeTraffic(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, nil, config{rounds: 1, traffic: 1})
	if strings.Contains(b.String(), "###") {
		t.Errorf("a report without runs has tables:\n%s", b.String())
	}
}
