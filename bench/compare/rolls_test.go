package main

import (
	"fmt"
	"testing"
	"time"
)

// TestCountRolls: each roll is timed from its own `rolling` line to the
// `roll complete` of its generation, not from a signal, and signals that
// started no roll are folded. The log is a supervisor's under SIGHUPs one
// a second with rolls of 1.5 s: the second and third signals queue behind
// generation 2, and share generation 3.
func TestCountRolls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ev := func(s float64, msg string, gen uint64) logLine {
		return logLine{at(s), fmt.Sprintf(`{"level":"info","ts":"x","msg":%q,"generation":%d}`, msg, gen)}
	}
	lines := []logLine{
		ev(0.0, msgRollComplete, 1), // a roll that started before the lines: not counted
		ev(0.0, msgRolling, 2),      // signal 1
		{at(0.1), "not json"},
		ev(0.5, "worker ready", 2),
		ev(1.0, "roll queued", 0), // signal 2; signal 3 at 1.4 says nothing
		ev(1.5, msgRollComplete, 2),
		ev(1.5, msgRolling, 3),
		ev(3.0, msgRollComplete, 3),
		ev(3.1, msgRolling, 4), // signal 4, still running at the end
	}
	rc := countRolls(lines)
	if rc.started != 3 {
		t.Errorf("started %d rolls, want 3", rc.started)
	}
	want := []time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond}
	if fmt.Sprint(rc.took) != fmt.Sprint(want) {
		t.Errorf("took %v, want %v (each from its own start)", rc.took, want)
	}
	if f := rc.folded(4); f != 1 {
		t.Errorf("4 signals: %d folded, want 1", f)
	}
	if f := rc.folded(2); f != 0 {
		t.Errorf("2 signals: %d folded, want 0", f)
	}
}

// TestLineLogSince: since returns the lines read at or after a time.
func TestLineLogSince(t *testing.T) {
	l := newLineLog()
	l.push("a")
	mid := time.Now()
	for l.lines[0].at.Equal(mid) {
		mid = time.Now()
	}
	l.push("b")
	l.push("c")
	var got []string
	for _, ln := range l.since(mid) {
		got = append(got, ln.text)
	}
	if fmt.Sprint(got) != "[b c]" {
		t.Errorf("since: %q, want [b c]", got)
	}
}
