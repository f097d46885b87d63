//go:build linux

package e2e

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// streams runs long /stream requests and keeps the last line of each.
type streams struct {
	mu    sync.Mutex
	last  []string
	lines int
	wg    sync.WaitGroup
	ended chan struct{} // one per ended stream
}

func (s *streams) start(ctx context.Context, t *testing.T, c *http.Client, url string, n int) {
	t.Helper()
	started := make(chan struct{}, n)
	for range n {
		s.wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := c.Do(req)
			if err != nil {
				started <- struct{}{}
				s.end("error: " + err.Error())
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			last, first := "", true
			for sc.Scan() {
				last = sc.Text()
				if first {
					started <- struct{}{}
					first = false
				}
				s.mu.Lock()
				s.lines++
				s.mu.Unlock()
			}
			if first {
				started <- struct{}{}
			}
			if err := sc.Err(); err != nil {
				last = "error: " + err.Error()
			}
			s.end(last)
		})
	}
	for range n {
		select {
		case <-started:
		case <-time.After(time.Until(deadline(t))):
			t.Fatal("streams did not start")
		}
	}
}

func (s *streams) end(last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = append(s.last, last)
	s.ended <- struct{}{}
}

// TestDrainingCap: 5 rolls a second apart while 200 streams run (40 more on
// each new generation, each far longer than the test): with
// -max-draining 2, never more than 2 generations drain at their own pace;
// the oldest is hurried, its streams end with their "cut" line, and its
// workers exit with status 0, never killed, before the next roll.
func TestDrainingCap(t *testing.T) {
	const maxDraining = 2
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "1", "-stop-timeout", "8s", "-max-draining", "2")
	sup.next("worker ready")
	url := "http://" + sup.addr + "/stream?n=100000&every=100ms"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	ctx, cancel := context.WithCancel(context.Background())
	st := streams{ended: make(chan struct{}, 1000)}
	defer func() {
		cancel()
		st.wg.Wait()
	}()

	alive := map[int]uint64{} // pid → generation
	draining := map[int]bool{}
	hurried := map[int]bool{}
	see := func(l logLine) {
		switch l.Msg {
		case "worker started":
			alive[l.Pid] = l.Generation
		case "retiring worker":
			draining[l.Pid] = true
		case "hurrying draining worker":
			hurried[l.Pid] = true
		case "worker exited":
			delete(alive, l.Pid)
			delete(draining, l.Pid)
		case "worker did not exit in time: killing":
			t.Errorf("worker %d (generation %d) was killed", l.Pid, l.Generation)
		}
		gens := map[uint64]bool{}
		for pid := range draining {
			if !hurried[pid] {
				gens[alive[pid]] = true
			}
		}
		// A retirement beyond the cap is followed at once by the hurry; a
		// worker's own line ("worker: drain started") can land in between,
		// since the workers write to the same pipe.
		if l.Msg != "retiring worker" && !strings.HasPrefix(l.Msg, "worker: ") && len(gens) > maxDraining {
			t.Errorf("after %q: %d generations drain unhurried, more than %d", l.Msg, len(gens), maxDraining)
		}
	}
	for _, l := range sup.seen {
		see(l)
	}
	maxAlive := 0
	for gen := uint64(2); gen <= 6; gen++ {
		st.start(ctx, t, c, url, 40)
		time.Sleep(time.Second) // the scenario: rolls a second apart
		sup.signal(syscall.SIGHUP)
		for _, l := range sup.until("roll complete", func(l logLine) bool { return l.Generation == gen }) {
			see(l)
		}
		// Wait for the hurried workers to be gone, then count the draining
		// generations alive.
		for {
			waiting := false
			for pid := range hurried {
				if _, ok := alive[pid]; ok {
					waiting = true
				}
			}
			if !waiting {
				break
			}
			for _, l := range sup.untilAny(func(l logLine) bool { return l.Msg == "worker exited" }) {
				see(l)
			}
		}
		gens := map[uint64]bool{}
		for pid := range draining {
			gens[alive[pid]] = true
		}
		maxAlive = max(maxAlive, len(gens))
		if len(gens) > maxDraining {
			t.Errorf("after the roll to %d: %d draining generations alive, more than %d", gen, len(gens), maxDraining)
		}
	}
	if len(hurried) == 0 {
		t.Errorf("no worker was hurried")
	}
	// Every stream of a hurried generation ends, with its cut line.
	for range 40 * len(hurried) {
		select {
		case <-st.ended:
		case <-time.After(time.Until(deadline(t))):
			t.Fatal("the streams of the hurried workers did not end")
		}
	}
	st.mu.Lock()
	cut, errs := 0, 0
	for _, l := range st.last {
		switch {
		case strings.HasPrefix(l, "cut after "):
			cut++
		default:
			errs++
			t.Errorf("a stream ended with %q", l)
		}
	}
	t.Logf("%d streams ended with their cut line, %d otherwise; %d workers hurried; at most %d draining generations alive after a roll",
		cut, errs, len(hurried), maxAlive)
	if cut < 40*len(hurried) {
		t.Errorf("%d streams cut for %d hurried workers of 40 streams each", cut, len(hurried))
	}
	st.mu.Unlock()
	// The streams still running end with their clients.
	cancel()
	st.wg.Wait()
	stopSupervisor(t, sup)
}
