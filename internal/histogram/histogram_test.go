package histogram

import (
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestObserve(t *testing.T) {
	b := []float64{1, 2}
	c := make([]uint64, 3)
	for _, v := range []float64{-1, 0.5, 1, 1.5, 2, 3} {
		Observe(b, c, v)
	}
	if want := []uint64{3, 2, 1}; !slices.Equal(c, want) {
		t.Fatalf("counts %v, want %v", c, want)
	}
	if v := Observe(b, c, -2); v != 0 {
		t.Fatalf("a negative observation counts as %v, want 0", v)
	}
}

func TestMerge(t *testing.T) {
	b := []float64{1, 2}
	c := make([]uint64, 3)
	// Other buckets: 0.5 and 1 go to 1, 1.5 to 2, 5 and above to the last.
	if !Merge(b, c, []float64{0.5, 1, 1.5, 5}, []uint64{1, 2, 3, 4, 5}) {
		t.Fatal("Merge refused a well-formed histogram")
	}
	if want := []uint64{3, 3, 9}; !slices.Equal(c, want) {
		t.Fatalf("counts %v, want %v", c, want)
	}
	if Merge(b, c, []float64{1}, []uint64{7}) || !slices.Equal(c, []uint64{3, 3, 9}) {
		t.Fatalf("a malformed histogram was merged: %v", c)
	}
	if bs := DurationBounds(); !slices.IsSorted(bs) || len(bs) == 0 {
		t.Fatalf("DurationBounds %v: not sorted", bs)
	}
}
