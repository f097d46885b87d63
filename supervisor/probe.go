package supervisor

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

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/reap"
)

// EnvProbePID and EnvProbeGeneration are set in the environment of an
// exec probe: the canary's pid and generation.
const (
	EnvProbePID        = "HANDOFF_PROBE_PID"
	EnvProbeGeneration = "HANDOFF_PROBE_GENERATION"
)

// A Probe checks that a roll's new generation serves, for servers whose
// "ready" lies (gunicorn without --preload says READY=1 before it imports
// the app). See WithProbe.
type Probe struct {
	kind   string // "http", "tcp" or "exec"
	target string // the URL or host:port
	argv   []string
	dialTo net.Addr // set when the target is the first listening socket

	// Attempts is how many times an HTTP or TCP probe checks the address
	// during the accept window, each on a new connection; every one must
	// succeed (default 10). The address is the shared listening socket, so
	// an attempt reaches the canaries or the old workers: the attempts are
	// spread over the window to reach every accepting worker with high
	// probability, not certainty. An exec probe is run once per canary.
	Attempts int
	// Timeout bounds each attempt (default 5s).
	Timeout time.Duration
}

// ProbeHTTP is a probe that GETs rawURL (http://HOST:PORT/PATH, or a bare
// /PATH for the supervisor's first listening socket, TCP or unix); a
// status from 200 to 399 passes, as in Kubernetes.
func ProbeHTTP(rawURL string) Probe { return Probe{kind: "http", target: rawURL} }

// ProbeTCP is a probe that connects to addr (HOST:PORT, or "" for the
// supervisor's first listening socket).
func ProbeTCP(addr string) Probe { return Probe{kind: "tcp", target: addr} }

// ProbeExec is a probe that runs argv against each canary, like
// Kubernetes' exec probe: exit status 0 passes. It runs with the
// supervisor's environment plus HANDOFF_PROBE_PID (the canary's pid) and
// HANDOFF_PROBE_GENERATION.
func ProbeExec(argv ...string) Probe { return Probe{kind: "exec", argv: argv} }

// String describes p for logs and errors.
func (p Probe) String() string {
	if p.kind == "exec" {
		return "exec " + strings.Join(p.argv, " ")
	}
	return p.kind + " " + p.target
}

// Check reports what is wrong with p, if anything.
func (p Probe) Check() error {
	switch p.kind {
	case "http":
		if strings.HasPrefix(p.target, "/") {
			break
		}
		u, err := url.Parse(p.target)
		if err != nil {
			return fmt.Errorf("supervisor: probe %q: %w", p.target, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("supervisor: probe %q: want http://HOST:PORT/PATH", p.target)
		}
	case "tcp":
		if p.target == "" {
			break
		}
		if _, _, err := net.SplitHostPort(p.target); err != nil {
			return fmt.Errorf("supervisor: probe %q: want HOST:PORT: %w", p.target, err)
		}
	case "exec":
		if len(p.argv) == 0 || p.argv[0] == "" {
			return errors.New("supervisor: exec probe without a command")
		}
	default:
		return errors.New("supervisor: probe: use ProbeHTTP, ProbeTCP or ProbeExec")
	}
	if p.Attempts < 0 || p.Timeout < 0 {
		return fmt.Errorf("supervisor: probe %v: negative attempts or timeout", p)
	}
	return nil
}

// WithProbe sets a probe that a roll's new generation must pass before it
// is accepted: it runs during the canaries' accept window (see
// WithAcceptWindow), in the background, and a failure fails the roll,
// which rolls back like a vetoed canary.
func WithProbe(p Probe) Option { return optionFunc(func(o *options) { o.probe = &p }) }

type probeResult struct {
	r   *roll
	err error
}

// canary is what a probe needs to know of a canary.
type canary struct{ pid, gen int }

// startProbe runs the probe for the roll's canaries in a goroutine, until
// the accept window ends; the result comes back on t.probes.
func (t *table) startProbe(r *roll) {
	p := *t.o.probe
	if p.Attempts == 0 {
		p.Attempts = 10
	}
	if p.Timeout == 0 {
		p.Timeout = 5 * time.Second
	}
	if p.kind == "http" && strings.HasPrefix(p.target, "/") || p.kind == "tcp" && p.target == "" {
		if len(t.socks) > 0 {
			p.dialTo = t.socks[0].Addr()
		}
		if p.kind == "http" {
			p.target = "http://localhost" + p.target
		}
	}
	var cs []canary
	for _, sl := range t.slots {
		if w := sl.next; w != nil && w.info.Generation == r.gen {
			cs = append(cs, canary{w.info.Pid, int(w.info.Generation)})
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), r.acceptAt.Add(p.Timeout))
	r.probing, r.stopProbe = true, cancel
	t.log.Info("probing the new generation", zap.Uint64("generation", r.gen), zap.Stringer("probe", p))
	until := r.acceptAt
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		defer cancel()
		err := p.run(ctx, t.reaper, until, cs)
		if err != nil {
			err = fmt.Errorf("probe %v: %w", p, err)
		}
		select {
		case t.probes <- probeResult{r, err}:
		case <-t.quit:
		}
	}()
}

// onProbe takes a probe's result: a failure fails the roll; a pass lets
// the generation be accepted at the end of the window.
func (t *table) onProbe(res probeResult) {
	r := res.r
	if r != t.roll || r.accepted || r.back {
		return // the roll ended or failed otherwise meanwhile
	}
	r.probing = false
	if res.err != nil {
		t.abortRoll(res.err)
		return
	}
	r.probed = true
	if !time.Now().Before(r.acceptAt) {
		t.accept()
	}
}

// run checks the address Attempts times spread until the end of the
// window, or runs the command once per canary at the end of it.
func (p Probe) run(ctx context.Context, rp *reap.Reaper, until time.Time, cs []canary) error {
	if p.kind == "exec" {
		if err := sleepUntil(ctx, until); err != nil {
			return err
		}
		for _, c := range cs {
			if err := p.exec(ctx, rp, c); err != nil {
				return fmt.Errorf("canary %d: %w", c.pid, err)
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

func (p Probe) once(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	var d net.Dialer
	dial := d.DialContext
	if a := p.dialTo; a != nil {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, a.Network(), a.String())
		}
	}
	if p.kind == "tcp" {
		c, err := dial(ctx, "tcp", p.target)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.target, nil)
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
func (p Probe) exec(ctx context.Context, rp *reap.Reaper, c canary) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	path, err := exec.LookPath(p.argv[0])
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
	env := append(os.Environ(), EnvProbePID+"="+strconv.Itoa(c.pid), EnvProbeGeneration+"="+strconv.Itoa(c.gen))
	proc, err := rp.Start(path, p.argv, &syscall.ProcAttr{Env: env,
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
