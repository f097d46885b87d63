// Package hello is the handler of the peer servers: the same answer as
// handoff's example (github.com/handoff-dev/handoff/example), so that a
// comparison measures the process model, not the handler.
//
// Every response is 200 and names the process that served it in the
// headers X-Worker-Pid, X-Generation and X-Version; ?sleep=DUR (up to a
// minute) delays it.
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
