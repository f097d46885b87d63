package hello

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHandler: the answer carries the same headers and body as the
// example's, and ?sleep holds it.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler("7"))
	defer srv.Close()
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		path    string
		atLeast time.Duration
	}{{"/", 0}, {"/x?sleep=30ms", 30 * time.Millisecond}, {"/?sleep=bogus", 0}} {
		start := time.Now()
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < tc.atLeast {
			t.Errorf("%s answered after %v, want at least %v", tc.path, took, tc.atLeast)
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Worker-Pid") != pid ||
			resp.Header.Get("X-Generation") != "7" || resp.Header.Get("X-Version") != Version {
			t.Errorf("%s: status %d, headers %v", tc.path, resp.StatusCode, resp.Header)
		}
		if want := "hello from worker " + pid + " (generation 7)\n"; string(body) != want {
			t.Errorf("%s: body %q, want %q", tc.path, body, want)
		}
	}
}

// TestStream: /stream sends its lines then the final one, like the
// example's.
func TestStream(t *testing.T) {
	srv := httptest.NewServer(Handler("1"))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stream?n=3&every=1ms")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "line 1 of 3\nline 2 of 3\nline 3 of 3\ndone 3\n"; err != nil || string(body) != want {
		t.Errorf("stream: %q, %v; want %q", body, err, want)
	}
}
