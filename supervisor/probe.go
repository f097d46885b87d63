package supervisor

import (
	"context"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/probe"
)

// EnvProbePID and EnvProbeGeneration are set in the environment of an
// exec probe: the canary's pid and generation.
const (
	EnvProbePID        = probe.EnvPID
	EnvProbeGeneration = probe.EnvGeneration
)

// A Probe checks that a roll's new generation serves, for servers whose
// "ready" lies (gunicorn without --preload says READY=1 before it imports
// the app). See WithProbe.
type Probe struct {
	kind   string // "http", "tcp" or "exec"
	target string // the URL or host:port
	argv   []string

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

// spec is what package internal/probe runs.
func (p Probe) spec() probe.Spec {
	return probe.Spec{Kind: p.kind, Target: p.target, Argv: p.argv, Attempts: p.Attempts, Timeout: p.Timeout}
}

// String describes p for logs and errors.
func (p Probe) String() string { return p.spec().String() }

// Check reports what is wrong with p, if anything.
func (p Probe) Check() error {
	if err := p.spec().Check(); err != nil {
		return fmt.Errorf("supervisor: %w", err)
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

// startProbe runs the probe for the roll's canaries in a goroutine, until
// the accept window ends; the result comes back on t.probes.
func (t *table) startProbe(r *roll) {
	var first net.Addr
	if len(t.socks) > 0 {
		first = t.socks[0].Addr()
	}
	p := t.o.probe.spec().Resolve(first)
	var cs []probe.Canary
	for _, sl := range t.slots {
		if w := sl.next; w != nil && w.info.Generation == r.gen {
			cs = append(cs, probe.Canary{Pid: w.info.Pid, Gen: int(w.info.Generation)})
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
		err := p.Run(ctx, t.reaper, until, cs)
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
