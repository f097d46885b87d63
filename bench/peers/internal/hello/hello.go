// Package hello is the handler of the peer servers: the same answer as
// handoff's example (github.com/handoff-dev/handoff/example), so that a
// comparison measures the process model, not the handler.
//
// Every response is 200 and names the process that served it in the
// headers X-Worker-Pid, X-Generation and X-Version; ?sleep=DUR (up to a
// minute) delays it. /stream?n=N&every=DUR streams like the example's:
// N lines "line i of N", one every DUR, then "done N".
package hello

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Version is sent in the X-Version header.
const Version = "peer"

// maxSleep bounds ?sleep=, as in the example.
const maxSleep = time.Minute

// Handler answers every request with 200 and the serving process's
// identity; generation is sent in X-Generation ("0" for a server that has
// none).
func Handler(generation string) http.Handler {
	pid := strconv.Itoa(os.Getpid())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			stream(w, r)
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			t := time.NewTimer(min(d, maxSleep))
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		w.Header().Set("X-Worker-Pid", pid)
		w.Header().Set("X-Generation", generation)
		w.Header().Set("X-Version", Version)
		fmt.Fprintf(w, "hello from worker %s (generation %s)\n", pid, generation)
	})
}

// stream sends ?n= lines (default 10, at most 100,000), one every ?every=
// (default 100ms, at most a minute), then "done n"; it stops early only if
// the client goes away.
func stream(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 {
		n = 10
	}
	n = min(n, 100_000)
	every, err := time.ParseDuration(r.URL.Query().Get("every"))
	if err != nil || every <= 0 {
		every = 100 * time.Millisecond
	}
	every = min(every, time.Minute)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := range n {
		fmt.Fprintf(w, "line %d of %d\n", i+1, n)
		if rc.Flush() != nil {
			return
		}
		if i == n-1 {
			break
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprintf(w, "done %d\n", n)
}
