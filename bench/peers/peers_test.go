package peers

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testContext is bounded by the test's deadline, less a margin to report.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

// TestNginxConfig: the configuration holds what the benchmark relies on.
func TestNginxConfig(t *testing.T) {
	dir := t.TempDir()
	n := Nginx{Prefix: dir, Addr: "127.0.0.1:8080", Workers: 2}
	conf, err := n.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"daemon off;", "master_process on;", "worker_processes 2;", `pid "` + dir + `/nginx.pid";`,
		"listen 127.0.0.1:8080;", "keepalive_requests 1000000;", `client_body_temp_path "` + dir + `/temp/body";`,
		`return 200 "hello from worker $pid (generation 0)\n";`, "add_header X-Worker-Pid $pid always;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Errorf("unbalanced braces:\n%s", conf)
	}
	n.Daemon, n.Addr = true, "[::1]:9"
	if conf, err = n.Config(); err != nil || !strings.Contains(conf, "daemon on;") ||
		!strings.Contains(conf, "listen [::1]:9;") {
		t.Errorf("daemon on [::1]: %v\n%s", err, conf)
	}
	if got, want := strings.Join(n.Args(), " "), "-p "+dir+"/ -c "+dir+"/nginx.conf -e stderr"; got != want {
		t.Errorf("Args() = %q, want %q", got, want)
	}
	if strings.Contains(conf, "http2") || strings.Contains(conf, "/stream") {
		t.Errorf("h2c or a stream without asking:\n%s", conf)
	}
	n.H2C, n.Stream = true, "line 1\ndone\n"
	conf, err = n.Config()
	for _, want := range []string{"listen [::1]:9 http2;", "location = /stream {", "limit_rate 100;", `return 200 "line 1\ndone\n";`} {
		if err != nil || !strings.Contains(conf, want) {
			t.Errorf("h2c and a stream: %v, config lacks %q:\n%s", err, want, conf)
		}
	}
}

// TestBadParameters: every bad input is refused with an error naming it.
func TestBadParameters(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		n    Nginx
		want error
		text string
	}{
		{Nginx{Prefix: dir, Addr: "10.0.0.1:80", Workers: 1}, ErrNotLoopback, "10.0.0.1:80"},
		{Nginx{Prefix: dir, Addr: "localhost:80", Workers: 1}, ErrNotLoopback, "localhost"},
		{Nginx{Prefix: dir, Addr: "127.0.0.1:0", Workers: 1}, ErrNotLoopback, "127.0.0.1:0"},
		{Nginx{Prefix: "rel/dir", Addr: "127.0.0.1:80", Workers: 1}, ErrBadPath, "rel/dir"},
		{Nginx{Prefix: dir + "/a b", Addr: "127.0.0.1:80", Workers: 1}, ErrBadPath, "' '"},
		{Nginx{Prefix: dir + `/x";`, Addr: "127.0.0.1:80", Workers: 1}, ErrBadPath, `'"'`},
		{Nginx{Prefix: dir + "/../x", Addr: "127.0.0.1:80", Workers: 1}, ErrBadPath, "clean"},
		{Nginx{Prefix: dir, Addr: "127.0.0.1:80", Workers: 0}, nil, "workers 0"},
		{Nginx{Prefix: dir, Addr: "127.0.0.1:80", Workers: 1, Stream: `say "hi"`}, nil, "stream body"},
		{Nginx{Prefix: dir, Addr: "127.0.0.1:80", Workers: 1, Stream: "$pid"}, nil, "stream body"},
	} {
		_, err := tc.n.Config()
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("Config(%+v) = %v, want %v naming %s", tc.n, err, tc.want, tc.text)
		}
		if err := tc.n.Write(); err == nil {
			t.Errorf("Write(%+v) succeeded", tc.n)
		}
	}
	for _, g := range []Gunicorn{
		{Dir: dir, Addr: "0.0.0.0:80", Workers: 2, Threads: 4},
		{Dir: "x", Addr: "127.0.0.1:80", Workers: 2, Threads: 4},
		{Dir: dir, Addr: "127.0.0.1:80", Workers: 2, Threads: 0},
		{Dir: dir, Addr: "127.0.0.1:80", Workers: 65, Threads: 1},
	} {
		if _, err := g.Args(); err == nil {
			t.Errorf("Args(%+v) succeeded", g)
		}
	}
	if err := (Gunicorn{Dir: "x"}).Write(); !errors.Is(err, ErrBadPath) {
		t.Errorf("Write to a relative directory: %v", err)
	}
}

// TestNginxAccepts: when nginx is installed, it accepts the configuration
// (nginx -t), and a real master answers like the example does.
func TestNginxAccepts(t *testing.T) {
	bin := lookPath(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	n := Nginx{Prefix: dir, Addr: freeAddr(t), Workers: 1}
	if err := n.Write(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, append(n.Args(), "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, n.Args()...)
	serve(t, cmd, n.Addr, func() error { return cmd.Process.Signal(os.Interrupt) })
	// The traffic scenario's variants: an h2c port and a slow /stream.
	n.H2C, n.Stream = true, "line 1 of 1\ndone 1\n"
	if err := n.Write(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, append(n.Args(), "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t with h2c and a stream: %v\n%s", err, out)
	}
}

// TestGunicornApp: when gunicorn is installed, it loads the application
// with the generated arguments, and a real arbiter answers like the example
// does.
func TestGunicornApp(t *testing.T) {
	bin := lookPath(t, "gunicorn", "/usr/bin/gunicorn")
	g := Gunicorn{Dir: t.TempDir(), Addr: freeAddr(t), Workers: 1, Threads: 2}
	if err := g.Write(); err != nil {
		t.Fatal(err)
	}
	args, err := g.Args()
	if err != nil {
		t.Fatal(err)
	}
	if want := "--worker-class gthread --threads 2 --workers 1 --bind " + g.Addr; !strings.HasPrefix(strings.Join(args, " "), want) {
		t.Errorf("Args() = %q, want prefix %q", args, want)
	}
	cmd := exec.Command(bin, args...)
	serve(t, cmd, g.Addr, func() error { return cmd.Process.Signal(os.Interrupt) })
}

func lookPath(t *testing.T, name, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	t.Skipf("%s is not installed (apt-get install %s); go run ./compare installs it", name, name)
	return ""
}

// freeAddr returns a loopback address with a port that was free a moment
// ago: nginx and gunicorn bind their own sockets.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serve starts cmd, waits until it answers a POST on addr like the example
// (the stderr line that says it listens is not portable across servers, so
// it polls), then stops it with stop and waits for its exit.
func serve(t *testing.T, cmd *exec.Cmd, addr string, stop func() error) {
	t.Helper()
	ctx := testContext(t)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logDone := make(chan []string)
	go func() {
		var lines []string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		logDone <- lines
	}()
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		lines := <-logDone
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: %v\n%s", cmd.Path, err, strings.Join(lines, "\n"))
		}
	}()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader("a body"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			pid := resp.Header.Get("X-Worker-Pid")
			if resp.StatusCode != 200 || pid == "" || resp.Header.Get("X-Generation") != "0" ||
				string(body) != "hello from worker "+pid+" (generation 0)\n" {
				t.Errorf("%s answered %d %v %q", cmd.Path, resp.StatusCode, resp.Header, body)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("%s never answered on %s: %v", cmd.Path, addr, err)
			return
		case <-tick.C: // polling: the server gives no portable readiness signal
		}
	}
}
