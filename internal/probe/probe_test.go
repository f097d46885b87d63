package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-dev/handoff/reap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d)
	}
	t.Cleanup(cancel)
	return ctx
}

func TestHTTPAndTCP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	ctx := testCtx(t)
	for _, tc := range []struct {
		spec Spec
		fail string // "" for a pass
	}{
		{Spec{Kind: "http", Target: srv.URL + "/ok"}, ""},
		{Spec{Kind: "http", Target: srv.URL + "/moved"}, ""},
		{Spec{Kind: "http", Target: srv.URL + "/broken"}, "attempt 1 of 3: status 500"},
		{Spec{Kind: "http", Target: "http://localhost/ok", DialTo: srv.Listener.Addr()}, ""},
		{Spec{Kind: "tcp", Target: srv.Listener.Addr().String()}, ""},
		{Spec{Kind: "tcp", Target: deadAddr}, "refused"},
	} {
		tc.spec.Attempts, tc.spec.Timeout = 3, 5*time.Second
		if err := tc.spec.Check(); err != nil {
			t.Fatalf("%v: Check: %v", tc.spec, err)
		}
		err := tc.spec.Run(ctx, nil, time.Now(), nil)
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%v: %v", tc.spec, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%v: %v, want an error with %q", tc.spec, err, tc.fail)
		}
	}
}

func TestExec(t *testing.T) {
	rp, err := reap.New()
	if err != nil {
		t.Skipf("reaper: %v", err)
	}
	defer rp.Close()
	ctx := testCtx(t)
	cs := []Canary{{Pid: 42, Gen: 7}}
	pass := Spec{Kind: "exec", Argv: []string{"/bin/sh", "-c", `test "$HANDOFF_PROBE_PID:$HANDOFF_PROBE_GENERATION" = 42:7`}, Timeout: 5 * time.Second}
	if err := pass.Run(ctx, rp, time.Now(), cs); err != nil {
		t.Errorf("%v: %v", pass, err)
	}
	fail := Spec{Kind: "exec", Argv: []string{"/bin/sh", "-c", "echo broken; exit 3"}, Timeout: 5 * time.Second}
	if err := fail.Run(ctx, rp, time.Now(), cs); err == nil || !strings.Contains(err.Error(), "canary 42") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("%v: %v, want the canary and the output", fail, err)
	}
}

func TestCheck(t *testing.T) {
	for _, s := range []Spec{
		{Kind: "http", Target: "ftp://x/"}, {Kind: "tcp", Target: "noport"}, {Kind: "exec"},
		{Kind: "udp"}, {Kind: "tcp", Attempts: -1},
	} {
		if err := s.Check(); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

func TestResolve(t *testing.T) {
	first := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	p := Spec{Kind: "http", Target: "/healthz"}.Resolve(first)
	if p.Attempts != 10 || p.Timeout != 5*time.Second || p.DialTo != first || p.Target != "http://localhost/healthz" {
		t.Errorf("http /PATH: %+v", p)
	}
	p = Spec{Kind: "tcp", Attempts: 3, Timeout: time.Second}.Resolve(nil)
	if p.Attempts != 3 || p.Timeout != time.Second || p.DialTo != nil || p.Target != "" {
		t.Errorf("tcp without a socket: %+v", p)
	}
	p = Spec{Kind: "http", Target: "http://x:1/"}.Resolve(first)
	if p.DialTo != nil || p.Target != "http://x:1/" {
		t.Errorf("http URL: %+v", p)
	}
}
