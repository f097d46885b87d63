package supervisor

import (
	"encoding/json"
	"testing"
	"time"
)

// TestHistogramMerge: counts an earlier program kept with other bounds
// all land in a bucket at least as large, and a round trip through the
// upgrade state's JSON loses nothing.
func TestHistogramMerge(t *testing.T) {
	old := Histogram{Bounds: []float64{0.007, 1, 1000}, Counts: []uint64{1, 2, 3, 4}, Sum: 10, Count: 10}
	h := newHistogram()
	h.observe(20 * time.Millisecond)
	h.merge(old)
	want := map[float64]uint64{0.01: 1, 0.025: 1, 1: 2} // 0.007→0.01, the observation, 1→1
	for i, b := range h.Bounds {
		if h.Counts[i] != want[b] {
			t.Errorf("bucket le=%g: %d, want %d", b, h.Counts[i], want[b])
		}
	}
	if inf := h.Counts[len(h.Bounds)]; inf != 7 { // 1000 and +Inf are above the last bound
		t.Errorf("+Inf bucket: %d, want 7", inf)
	}
	if h.Count != 11 || h.Sum != 10.02 {
		t.Errorf("count %d sum %g, want 11 and 10.02", h.Count, h.Sum)
	}
	h.merge(Histogram{Bounds: []float64{1}, Counts: []uint64{5}}) // malformed: ignored
	if h.Count != 11 {
		t.Errorf("a malformed histogram was merged: count %d", h.Count)
	}

	c := newCounters()
	c.Starts, c.Exits.Signal, c.Rolls.Completed, c.Upgrades.Failed, c.Notify.Foreign = 3, 1, 2, 1, 9
	c.DrainDuration.observe(time.Second)
	b, err := json.Marshal(upgradeState{Counters: &c})
	if err != nil {
		t.Fatal(err)
	}
	var st upgradeState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	n := newCounters()
	n.Starts = 1
	n.inherit(st.Counters)
	n.inherit(nil) // a program without counters
	if n.Starts != 4 || n.Exits.Signal != 1 || n.Rolls.Completed != 2 || n.Upgrades.Failed != 1 || n.Notify.Foreign != 9 || n.DrainDuration.Count != 1 {
		t.Errorf("inherited %+v", n)
	}
}

// BenchmarkPublish: the run loop's cost per event of keeping Stats
// current, with 1,000 workers (one op is one publish).
func BenchmarkPublish(b *testing.B) {
	ns, err := openNotifySocket()
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	t := &table{s: &Supervisor{}, notify: ns, count: newCounters(), live: map[*child]struct{}{}}
	for i := range 1000 {
		w := &child{info: WorkerInfo{Slot: i, Pid: 1000 + i, Generation: 1, State: Ready}}
		t.slots = append(t.slots, &slot{index: i, w: w})
		t.live[w] = struct{}{}
	}
	b.ReportAllocs()
	for b.Loop() {
		t.publish()
	}
}
