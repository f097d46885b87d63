package acceptq

import (
	"testing"
	"time"
)

// TestWatch: a queue that stays non-empty without going down for the time is not served, once;
// it is served again when it goes down, empties, or nobody is expected to serve it.
func TestWatch(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := NewWatch(1, 10*time.Second, t0)
	if got := w.Next(); !got.Equal(at(1)) {
		t.Fatalf("Next: %v, want a tenth of the time after the start", got)
	}
	if w.Due(at(0.5)) || !w.Due(at(1)) || !w.Next().Equal(at(2)) {
		t.Fatalf("Due: want false before Next, true at it, then Next a period later (%v)", w.Next())
	}
	q := Queue{Known: true, Len: 3, Max: 128}
	steps := []struct {
		at      float64
		q       Queue
		serving bool
		want    Verdict
		stuck   bool
	}{
		{1, q, true, Unchanged, false},                             // non-empty: counting
		{10, q, true, Unchanged, false},                            // 9s: not yet
		{11, q, true, NotServed, true},                             // 10s
		{12, Queue{Known: true, Len: 4}, true, Unchanged, true},    // growing: still stuck, said once
		{13, Queue{Known: true, Len: 2}, true, ServedAgain, false}, // went down
		{14, Queue{Known: true, Len: 2}, false, Unchanged, false},  // no one ready: not counted
		{15, Queue{Known: true, Len: 2}, true, Unchanged, false},   // counting from here
		{25, Queue{Known: true, Len: 2}, true, NotServed, true},    // 10s later
		{26, Queue{Known: false}, true, ServedAgain, false},        // unknown
		{27, Queue{Known: true, Len: 0}, true, Unchanged, false},   // empty
	}
	for _, s := range steps {
		if got := w.Observe(0, s.q, s.serving, at(s.at)); got != s.want {
			t.Errorf("at %vs: %v, want %v", s.at, got, s.want)
		}
		gotQ, since := w.State(0)
		if gotQ != s.q || !since.IsZero() != s.stuck {
			t.Errorf("at %vs: state %+v since %v, want %+v stuck %v", s.at, gotQ, since, s.q, s.stuck)
		}
	}
	w.Off()
	if w.Due(at(100)) {
		t.Error("Due after Off")
	}
	if off := NewWatch(1, 0, t0); !off.Next().IsZero() || off.Due(at(100)) {
		t.Error("a Watch of time 0 is not off")
	}
}
