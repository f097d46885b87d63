//go:build linux

package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReadmeCLIExample runs the README's CLI command as written, from the
// repository's root, with only its port and pid file changed: gunicorn
// serves example/app.py, which must be in the repository.
func TestReadmeCLIExample(t *testing.T) {
	if _, err := exec.LookPath("gunicorn"); err != nil {
		t.Skip("gunicorn is not installed: apt-get install gunicorn (.ci/run installs it)")
	}
	checkFds(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "go run ./cmd/handoff -listen "
	var args []string
	for line := range strings.Lines(string(readme)) {
		if strings.HasPrefix(line, prefix) {
			line, _, _ = strings.Cut(line, "#")
			args = strings.Fields(strings.TrimPrefix(line, "go run ./cmd/handoff"))
			break
		}
	}
	if args == nil {
		t.Fatalf("README.md has no line starting %q", prefix)
	}
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "tcp://127.0.0.1:"):
			args[i] = "tcp://127.0.0.1:0" // 8080 may be taken
		case i > 0 && args[i-1] == "-pidfile":
			args[i] = pidfile
		}
	}
	sep := slices.Index(args, "--")
	if sep < 0 {
		t.Fatalf("README's command %q has no --", args)
	}
	args = slices.Insert(args, sep, "-log-format", "json")
	// As typed in a shell at the root of a clone: sh changes directory, then
	// becomes handoff (exec keeps the pid).
	p := startProc(t, "/bin/sh", append([]string{"-c", `cd "$0" && exec "$@"`, root, bins.handoff}, args...))
	l, from := p.waitMsg(0, "listening")
	p.waitReady(from, 2, 1)
	// Until both arbiters answered: gunicorn says READY=1 before its own
	// worker boots, and a TERM in that moment keeps it to the stop timeout.
	arbiters := map[string]bool{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; len(arbiters) < 2; i++ {
		if i == 1000 {
			t.Fatalf("1000 requests answered by the arbiters %v only", arbiters)
		}
		resp, err := client.Get("http://" + l.Addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, arbiter, ok := strings.Cut(string(body), "(arbiter ")
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello from gunicorn worker") || !ok {
			t.Fatalf("GET: %d %q %v, want 200 from example/app.py", resp.StatusCode, body, err)
		}
		arbiters[arbiter] = true
	}
	if st := statusJSON(t, "-pidfile", pidfile); len(st.Workers) != 2 {
		t.Errorf("status -pidfile: %d workers, want 2", len(st.Workers))
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}
