package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		line string
		want event
	}{
		{`{"level":"info","ts":1.7e9,"msg":"listening","name":"","addr":"127.0.0.1:41234"}`,
			event{Msg: msgListening, Level: "info", Addr: "127.0.0.1:41234"}},
		{`{"level":"info","msg":"worker ready","worker":3,"pid":42,"generation":7,"after":0.004}`,
			event{Msg: msgWorkerReady, Level: "info", Worker: 3, Pid: 42, Generation: 7}},
		{`{"level":"info","msg":"roll complete","generation":2,"took":0.0123}`,
			event{Msg: msgRollComplete, Level: "info", Generation: 2, Took: 0.0123}},
		{`{"level":"error","msg":"roll failed; the previous generation keeps serving","generation":5,"error":"boom"}`,
			event{Msg: "roll failed; the previous generation keeps serving", Level: "error", Generation: 5, Error: "boom"}},
		{`panic: runtime error`, event{}},
		{`{"msg": 3}`, event{}},
	} {
		got := parseEvent(tc.line)
		tc.want.Raw = tc.line
		if got != tc.want {
			t.Errorf("parseEvent(%s)\n = %+v\nwant %+v", tc.line, got, tc.want)
		}
	}
	if ev := parseEvent(`{"msg":"roll complete","took":0.0123}`); ev.took() != 12300*time.Microsecond {
		t.Errorf("took %v, want 12.3ms", ev.took())
	}
	if !parseEvent(`{"msg":"roll failed; x"}`).rollFailed() || parseEvent(`{"msg":"rolling"}`).rollFailed() {
		t.Error("rollFailed misjudges")
	}
}

func TestEventQueue(t *testing.T) {
	q := newEventQueue()
	for i := range tailLines + 5 {
		q.push(event{Generation: uint64(i), Raw: "line"})
	}
	ctx, cancel := context.WithCancel(t.Context())
	for i := range tailLines + 5 {
		ev, err := q.next(ctx)
		if err != nil || ev.Generation != uint64(i) {
			t.Fatalf("event %d: %+v, %v", i, ev, err)
		}
	}
	if n := len(q.lastLines()); n != tailLines {
		t.Errorf("kept %d lines, want %d", n, tailLines)
	}
	cancel()
	if _, err := q.next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("next on a cancelled context: %v", err)
	}
	q.push(event{Msg: "last"})
	q.close()
	if ev, err := q.next(t.Context()); err != nil || ev.Msg != "last" {
		t.Errorf("after close, the queued event: %+v, %v", ev, err)
	}
	if _, err := q.next(t.Context()); !errors.Is(err, errLogClosed) {
		t.Errorf("next on a closed, empty queue: %v", err)
	}
}
