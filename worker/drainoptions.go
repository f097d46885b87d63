package worker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// A DrainOption configures ServeAndDrain.
type DrainOption interface{ applyDrain(*drainOptions) }

type drainOptionFunc func(*drainOptions)

func (f drainOptionFunc) applyDrain(o *drainOptions) { f(o) }

// drainOptions holds ServeAndDrain's settings with their defaults.
type drainOptions struct {
	idleGrace  time.Duration // with idleGraceSet; otherwise idle connections wait for the deadline
	idleSet    bool
	timeout    time.Duration // the drain deadline; 0: none
	bodyLimit  int64
	certFile   string
	keyFile    string
	logger     *slog.Logger
	handover   bool                        // hand idle connections over (see ServeAndDrain)
	handClient func() (*handClient, error) // the socket pair's client, nil if none: a test seam
}

func defaultDrainOptions() drainOptions {
	return drainOptions{timeout: DefaultDrainTimeout(), bodyLimit: 1 << 20, logger: defaultLogger(),
		handover: true, handClient: processHandClient}
}

func (o drainOptions) validate() error {
	switch {
	case o.idleGrace < 0:
		return fmt.Errorf("worker: drain: idle grace %v is negative", o.idleGrace)
	case o.timeout < 0:
		return fmt.Errorf("worker: drain: drain timeout %v is negative", o.timeout)
	case o.bodyLimit < 0:
		return fmt.Errorf("worker: drain: body limit %d is negative", o.bodyLimit)
	case (o.certFile == "") != (o.keyFile == ""):
		return fmt.Errorf("worker: drain: TLS needs both a certificate and a key file, got %q and %q", o.certFile, o.keyFile)
	}
	return nil
}

// WithIdleGrace makes the drain close a connection that has been idle for
// d, counted from its last activity. By default an idle connection is
// left open until its client reuses or closes it, or until the drain
// deadline: any idle close races a client reusing the connection, and
// fails its request (see ServeAndDrain). 0 closes idle connections as soon
// as the drain starts, like http.Server.Shutdown.
func WithIdleGrace(d time.Duration) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.idleGrace, o.idleSet = d, true })
}

// WithDrainTimeout sets the drain deadline: d after the drain started,
// request contexts are cancelled and idle connections closed, and what
// is left d/6 later is closed by force (see ServeAndDrain). The default is
// DefaultDrainTimeout(); 0 sets no deadline: the supervisor kills the worker
// at its stop timeout.
func WithDrainTimeout(d time.Duration) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.timeout = d })
}

// WithBodyLimit sets how much of a request body the handler left unread is
// read and discarded before a draining connection is closed (default
// 1 MiB). Beyond it the connection is closed anyway, and the client may
// see a reset. 0 reads nothing. A body that was never asked for with
// "100 Continue" before the response header went out is not read either:
// its client waits for the response instead of sending it.
func WithBodyLimit(n int64) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.bodyLimit = n })
}

// WithTLSFiles serves TLS with the certificate chain and key in these PEM
// files (as http.Server.ServeTLS), on top of srv.TLSConfig if it is set.
func WithTLSFiles(certFile, keyFile string) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.certFile, o.keyFile = certFile, keyFile })
}

// WithDrainLogger sets where the drain reports its start and what its
// deadline cut; nil reports nothing. By default the drain logs to stderr in
// its supervisor's format (EnvLogFormat), or, when that is unset, to
// slog.Default().
func WithDrainLogger(l *slog.Logger) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.logger = l })
}

// WithHandover turns connection hand-over on or off (see ServeAndDrain,
// "# Hand-over"). It is on by default, and only works under a handoff
// supervisor running with hand-over, for plaintext HTTP/1.x: it is off
// over TLS and when the server serves h2c, whatever this option says.
// Off, the drain keeps every connection until its client is done with it,
// as without a supervisor.
func WithHandover(on bool) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.handover = on })
}

// tlsConfig returns the TLS configuration to serve with, or nil for
// plaintext.
func (o drainOptions) tlsConfig(srv *http.Server) (*tls.Config, error) {
	c := srv.TLSConfig
	if o.certFile == "" && (c == nil || len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil) {
		if c != nil {
			return nil, errors.New("worker: drain: TLSConfig has no certificate (Certificates, GetCertificate or GetConfigForClient)")
		}
		return nil, nil
	}
	if c == nil {
		c = &tls.Config{}
	} else {
		c = c.Clone()
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("worker: drain: %w", err)
		}
		c.Certificates = append(c.Certificates, cert)
	}
	if len(c.NextProtos) == 0 && (srv.Protocols == nil || srv.Protocols.HTTP2()) && srv.TLSNextProto == nil {
		// Serve configures HTTP/2 for a TLS listener only if "h2" is
		// offered; configuring it completes the list.
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return c, nil
}
