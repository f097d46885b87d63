package endpoint

import (
	"fmt"
	"net/http"
)

// Health answers /livez and /readyz: /livez 200 while it is served; /readyz 200 once running is
// closed and while draining reports false, 503 otherwise.
func Health(running <-chan struct{}, draining func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-running:
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if draining() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
