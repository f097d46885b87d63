package supervisor

import (
	"net/http"

	"github.com/handoff-dev/handoff/internal/endpoint"
)

// WithHealth serves /livez and /readyz on addr (a listener.ParseAddr form,
// e.g. "tcp://0.0.0.0:8081"), for Kubernetes' probes or a load balancer's
// health check: /livez answers 200 while the supervisor runs; /readyz
// answers 200 once Run has started or resumed the workers and until a stop
// begins (its WithShutdownDelay included), 503 otherwise. The socket
// survives an in-place upgrade, and the new program serves it only once it
// has resumed the workers, so a probe during an upgrade waits a moment
// instead of being refused or told "starting".
func WithHealth(addr string) Option {
	return optionFunc(func(o *options) { o.healthAddr = addr })
}

// healthHandler answers /livez and /readyz (WithHealth).
func healthHandler(s *Supervisor) http.Handler { return endpoint.Health(s.Running(), s.Draining) }
