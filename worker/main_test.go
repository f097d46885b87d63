package worker

import (
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// deadline is when a test should give up waiting, derived from the test's own deadline.
func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d.Add(-time.Until(d) / 10)
	}
	return time.Now().Add(time.Minute)
}

// checkFdLeak fails the test if it ends with more or fewer descriptors open than it began with.
// Call it first, so that its check runs after every other cleanup.
func checkFdLeak(t *testing.T) {
	t.Helper()
	before := openFds(t)
	t.Cleanup(func() {
		if after := openFds(t); len(after) != len(before) {
			t.Errorf("open descriptors: %d before the test, %d after:\nbefore %v\nafter  %v", len(before), len(after), before, after)
		}
	})
}

// openFds lists this process's descriptors and what they point at.
func openFds(t *testing.T) map[int]string {
	t.Helper()
	// Start the netpoller first, so its descriptors are counted before as well as after.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[int]string, len(ents))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[fd] = link
	}
	return fds
}
