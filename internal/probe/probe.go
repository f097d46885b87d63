package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/reap"
)

// EnvPID and EnvGeneration are set in the environment of an exec probe: the canary's pid and
// generation.
const (
	EnvPID        = "HANDOFF_PROBE_PID"
	EnvGeneration = "HANDOFF_PROBE_GENERATION"
)

// A Spec says what to probe and how.
type Spec struct {
	Kind   string   // "http", "tcp" or "exec"
	Target string   // the URL or host:port; for tcp, "" means DialTo
	Argv   []string // exec's command
	// DialTo, if set, is where HTTP and TCP attempts connect, whatever the target's host (the
	// first listening socket, TCP or unix).
	DialTo net.Addr
	// Attempts is how many times an HTTP or TCP probe checks the address until the end of the
	// window, each on a new connection; every one must succeed. An exec probe runs once per
	// canary. Timeout bounds each attempt.
	Attempts int
	Timeout  time.Duration
}

// Resolve fills in what p leaves to its defaults: 10 attempts, 5s each, and for a bare
// /PATH (http) or "" (tcp) target, first, the caller's first listening socket (nil: none).
func (p Spec) Resolve(first net.Addr) Spec {
	if p.Attempts == 0 {
		p.Attempts = 10
	}
	if p.Timeout == 0 {
		p.Timeout = 5 * time.Second
	}
	if p.Kind == "http" && strings.HasPrefix(p.Target, "/") || p.Kind == "tcp" && p.Target == "" {
		if first != nil {
			p.DialTo = first
		}
		if p.Kind == "http" {
			p.Target = "http://localhost" + p.Target
		}
	}
	return p
}

// A Canary is what a probe needs to know of a process it checks.
type Canary struct{ Pid, Gen int }

// String describes p for logs and errors.
func (p Spec) String() string {
	if p.Kind == "exec" {
		return "exec " + strings.Join(p.Argv, " ")
	}
	return p.Kind + " " + p.Target
}

// Check reports what is wrong with p, if anything. A Target of a bare /PATH (http) or ""
// (tcp) is the caller's first listening socket, and passes.
func (p Spec) Check() error {
	switch p.Kind {
	case "http":
		if strings.HasPrefix(p.Target, "/") {
			break
		}
		u, err := url.Parse(p.Target)
		if err != nil {
			return fmt.Errorf("probe %q: %w", p.Target, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("probe %q: want http://HOST:PORT/PATH", p.Target)
		}
	case "tcp":
		if p.Target == "" {
			break
		}
		if _, _, err := net.SplitHostPort(p.Target); err != nil {
			return fmt.Errorf("probe %q: want HOST:PORT: %w", p.Target, err)
		}
	case "exec":
		if len(p.Argv) == 0 || p.Argv[0] == "" {
			return errors.New("exec probe without a command")
		}
	default:
		return errors.New("probe: use ProbeHTTP, ProbeTCP or ProbeExec")
	}
	if p.Attempts < 0 || p.Timeout < 0 {
		return fmt.Errorf("probe %v: negative attempts or timeout", p)
	}
	return nil
}

// Run checks the address Attempts times spread until the end of the window, until, or runs the
// command once per canary at the end of it, through rp. ctx bounds it all.
func (p Spec) Run(ctx context.Context, rp *reap.Reaper, until time.Time, cs []Canary) error {
	if p.Kind == "exec" {
		if err := sleepUntil(ctx, until); err != nil {
			return err
		}
		for _, c := range cs {
			if err := p.exec(ctx, rp, c); err != nil {
				return fmt.Errorf("canary %d: %w", c.Pid, err)
			}
		}
		return nil
	}
	every := time.Until(until) / time.Duration(p.Attempts)
	for i := range p.Attempts {
		if i > 0 {
			if err := sleepUntil(ctx, time.Now().Add(every)); err != nil {
				return err
			}
		}
		if err := p.once(ctx); err != nil {
			return fmt.Errorf("attempt %d of %d: %w", i+1, p.Attempts, err)
		}
	}
	return nil
}

func (p Spec) once(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	var d net.Dialer
	dial := d.DialContext
	if a := p.DialTo; a != nil {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, a.Network(), a.String())
		}
	}
	if p.Kind == "tcp" {
		c, err := dial(ctx, "tcp", p.Target)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Target, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: dial}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// exec runs the command against c through the reaper, the one waiter
// for this process's children (os/exec would lose its status to a
// subreaper drain), and kills it at the timeout.
func (p Spec) exec(ctx context.Context, rp *reap.Reaper, c Canary) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	path, err := exec.LookPath(p.Argv[0])
	if err != nil {
		return err
	}
	out, err := os.CreateTemp("", "handoff-probe")
	if err != nil {
		return err
	}
	os.Remove(out.Name())
	defer out.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	env := append(os.Environ(), EnvPID+"="+strconv.Itoa(c.Pid), EnvGeneration+"="+strconv.Itoa(c.Gen))
	proc, err := rp.Start(path, p.Argv, &syscall.ProcAttr{Env: env,
		Files: []uintptr{devnull.Fd(), out.Fd(), out.Fd()}})
	if err != nil {
		return err
	}
	st, err := proc.Wait(ctx)
	if err != nil {
		proc.Signal(syscall.SIGKILL)
		st, _ = proc.Wait(context.Background()) // a killed child exits at once
		return fmt.Errorf("no answer within %v: %w", p.Timeout, err)
	}
	if st.Success() {
		return nil
	}
	msg := st.String()
	buf := make([]byte, 4096)
	n, _ := out.ReadAt(buf, 0)
	if s := strings.TrimSpace(string(buf[:n])); s != "" {
		msg += ": " + s
	}
	return errors.New(msg)
}

func sleepUntil(ctx context.Context, when time.Time) error {
	tm := time.NewTimer(time.Until(when))
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
