package main

import (
	"slices"
	"time"
)

// percentiles returns the nearest-rank p50, p99 and max of ds, or -1s
// when it is empty.
func percentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return -1, -1, -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p int) time.Duration { return s[max((len(s)*p+99)/100, 1)-1] }
	return rank(50), rank(99), s[len(s)-1]
}

// mean returns the mean of xs, 0 for none.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// errText renders an error for a table cell or a progress line; nothing
// for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return "error: " + err.Error()
}
