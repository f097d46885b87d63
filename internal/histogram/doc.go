// Package histogram is the arithmetic of the supervisor's duration histograms: their buckets
// (DurationBounds), the bucket an observation falls in (Observe), and how a histogram an
// earlier program kept, possibly with other buckets, is added in without losing a count
// (Merge). Counts are per bucket, not cumulative, with one more entry than the bounds for the
// observations above the last. The exported Histogram type, and which durations are observed,
// are the supervisor's.
package histogram
