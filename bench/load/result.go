package load

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Sample is one request: when it started, how long it took, how it ended.
// Dial time counts for the request that needed the connection.
type Sample struct {
	Start    time.Duration // since Result.Begin
	Duration time.Duration
	Client   uint16
	Kind     Kind
	Method   Method // GET or POST, the method actually sent
}

// Failure is a failed request kept in detail.
type Failure struct {
	Client int
	At     time.Duration // start, since Result.Begin
	Kind   Kind
	Method Method
	Reused bool // sent on a connection that had already served a response
	Err    error
}

// Result is the record of a load run.
type Result struct {
	Begin, End time.Time // when the clients started; when the last one stopped
	Clients    int

	// Samples holds every recorded request, ordered by Start.
	Samples []Sample
	// Failures holds the first failures of each client in detail (see
	// WithFailureDetails), ordered by At; DroppedFailures counts the rest.
	Failures        []Failure
	DroppedFailures int

	Dials   int // connections dialled (attempts, successful or not)
	Aborted int // requests cut short by the context, not in Samples
}

// Window is a span of wall time, From inclusive, To exclusive.
type Window struct{ From, To time.Time }

// Stats summarises the requests that started in some windows.
type Stats struct {
	Span     time.Duration // total length of the windows
	Requests int           // requests started in the windows
	ByKind   [NumKinds]int // requests by how they ended; ByKind[OK] succeeded
	RPS      float64       // successful requests per second of Span
	P50, P99 time.Duration // latency percentiles of the successful requests
	Max      time.Duration // slowest successful request
}

// OK returns the number of successful requests.
func (s Stats) OK() int { return s.ByKind[OK] }

// Failed returns the number of failed requests, of every kind.
func (s Stats) Failed() int { return s.Requests - s.ByKind[OK] }

// span is a window as offsets from Result.Begin.
type span struct{ from, to time.Duration }

// Stats summarises the requests that started in the given windows, merged
// where they overlap and clipped to the run; without windows, the whole
// run.
func (r *Result) Stats(windows ...Window) Stats {
	total := r.End.Sub(r.Begin)
	var spans []span
	if len(windows) == 0 {
		spans = []span{{0, total + 1}} // every sample starts before End
	} else {
		spans = r.spans(windows)
	}
	var s Stats
	var lat []time.Duration
	for _, sp := range spans {
		s.Span += min(sp.to, total) - sp.from
		i := sort.Search(len(r.Samples), func(i int) bool { return r.Samples[i].Start >= sp.from })
		for ; i < len(r.Samples) && r.Samples[i].Start < sp.to; i++ {
			lat = s.add(r.Samples[i], lat)
		}
	}
	s.finish(lat)
	return s
}

// Series summarises the run in consecutive windows of length step from
// Begin (the last one may be shorter), for plots: element i covers
// [Begin+i*step, Begin+(i+1)*step).
func (r *Result) Series(step time.Duration) ([]Stats, error) {
	if step <= 0 {
		return nil, fmt.Errorf("load: series step %v must be positive", step)
	}
	total := r.End.Sub(r.Begin)
	if total/step >= 1<<20 {
		return nil, fmt.Errorf("load: series step %v gives more than 2^20 points over %v", step, total)
	}
	n := max(int((total+step-1)/step), 1)
	out := make([]Stats, n)
	lats := make([][]time.Duration, n)
	for _, smp := range r.Samples {
		i := min(int(smp.Start/step), n-1)
		lats[i] = out[i].add(smp, lats[i])
	}
	for i := range out {
		out[i].Span = min(step, total-time.Duration(i)*step)
		out[i].finish(lats[i])
	}
	return out, nil
}

func (r *Result) spans(windows []Window) []span {
	end := r.End.Sub(r.Begin)
	var spans []span
	for _, w := range windows {
		sp := span{max(w.From.Sub(r.Begin), 0), min(w.To.Sub(r.Begin), end)}
		if sp.to > sp.from {
			spans = append(spans, sp)
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	merged := spans[:0]
	for _, sp := range spans {
		if k := len(merged) - 1; k >= 0 && sp.from <= merged[k].to {
			merged[k].to = max(merged[k].to, sp.to)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

func (s *Stats) add(smp Sample, lat []time.Duration) []time.Duration {
	s.Requests++
	s.ByKind[smp.Kind]++
	if smp.Kind == OK {
		lat = append(lat, smp.Duration)
	}
	return lat
}

func (s *Stats) finish(lat []time.Duration) {
	if s.Span > 0 {
		s.RPS = float64(s.ByKind[OK]) / s.Span.Seconds()
	}
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	s.P50, s.P99, s.Max = percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
}

// percentile returns the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[max(rank, 1)-1]
}
