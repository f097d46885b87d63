package load_test

import (
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

// synthetic is a run of 10 s with one request starting every second: the
// one at second i took i+1 ms, and the one at second 7 failed.
func synthetic() *load.Result {
	begin := time.Now()
	r := &load.Result{Begin: begin, End: begin.Add(10 * time.Second), Clients: 1}
	for i := range 10 {
		k := load.OK
		if i == 7 {
			k = load.Reset
		}
		r.Samples = append(r.Samples, load.Sample{
			Start: time.Duration(i) * time.Second, Duration: time.Duration(i+1) * time.Millisecond, Kind: k,
		})
	}
	return r
}

func TestStatsWindows(t *testing.T) {
	r := synthetic()
	at := func(s float64) time.Time { return r.Begin.Add(time.Duration(s * float64(time.Second))) }

	all := r.Stats()
	if all.Requests != 10 || all.OK() != 9 || all.Failed() != 1 || all.ByKind[load.Reset] != 1 {
		t.Errorf("whole run: %+v", all)
	}
	if all.P50 != 5*time.Millisecond || all.P99 != 10*time.Millisecond || all.Max != 10*time.Millisecond {
		t.Errorf("whole run: p50 %v p99 %v max %v; want 5ms 10ms 10ms", all.P50, all.P99, all.Max)
	}

	// [2 s, 5 s) and [4 s, 6 s) overlap: merged to [2 s, 6 s), four
	// requests of 3..6 ms; [7 s, 8 s) adds the failure.
	st := r.Stats(load.Window{From: at(2), To: at(5)}, load.Window{From: at(4), To: at(6)},
		load.Window{From: at(7), To: at(8)})
	if st.Requests != 5 || st.OK() != 4 || st.ByKind[load.Reset] != 1 || st.Span != 5*time.Second {
		t.Errorf("windows: %+v", st)
	}
	if st.P50 != 4*time.Millisecond || st.P99 != 6*time.Millisecond || st.Max != 6*time.Millisecond {
		t.Errorf("windows: p50 %v p99 %v max %v; want 4ms 6ms 6ms", st.P50, st.P99, st.Max)
	}
	if st.RPS != 4.0/5 {
		t.Errorf("windows: %v req/s, want 0.8", st.RPS)
	}

	// Windows outside the run or inverted count nothing.
	if st := r.Stats(load.Window{From: at(-5), To: at(-1)}, load.Window{From: at(20), To: at(30)},
		load.Window{From: at(5), To: at(3)}); st.Requests != 0 || st.Span != 0 {
		t.Errorf("empty windows: %+v", st)
	}
}

func TestSeries(t *testing.T) {
	r := synthetic()
	s, err := r.Series(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 5 {
		t.Fatalf("%d points, want 5", len(s))
	}
	for i, want := range []int{2, 2, 2, 2, 2} {
		if s[i].Requests != want {
			t.Errorf("point %d: %d requests, want %d", i, s[i].Requests, want)
		}
	}
	if s[3].OK() != 1 || s[3].Max != 7*time.Millisecond || s[3].RPS != 0.5 {
		t.Errorf("point 3: %+v", s[3])
	}
	if _, err := r.Series(0); err == nil {
		t.Error("Series(0) succeeded")
	}
	if _, err := r.Series(time.Nanosecond); err == nil {
		t.Error("Series with 10^10 points succeeded")
	}
}
