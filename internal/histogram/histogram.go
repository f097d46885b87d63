package histogram

import "sort"

// DurationBounds returns the buckets, in seconds: from a fast spawn
// (milliseconds) to a long drain (minutes).
func DurationBounds() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
}

// Observe counts v, in seconds, in its bucket of counts: the first whose
// bound is at least v. A negative v counts as 0; Observe returns v as
// counted, for the sum.
func Observe(bounds []float64, counts []uint64, v float64) float64 {
	v = max(v, 0)
	counts[sort.SearchFloat64s(bounds, v)]++
	return v
}

// Merge adds oCounts, of the buckets oBounds, to counts: each of its
// buckets goes to the first of bounds that is at least as large, so no
// count is lost. It adds nothing, and returns false, if oCounts does not
// have one more entry than oBounds.
func Merge(bounds []float64, counts []uint64, oBounds []float64, oCounts []uint64) bool {
	if len(oCounts) != len(oBounds)+1 {
		return false
	}
	for i, n := range oCounts {
		j := len(bounds)
		if i < len(oBounds) {
			j = sort.SearchFloat64s(bounds, oBounds[i])
		}
		counts[j] += n
	}
	return true
}
