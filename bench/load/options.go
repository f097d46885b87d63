package load

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Mode selects the HTTP client.
type Mode uint8

const (
	// Raw is the hand-written HTTP/1.1 client that never retries.
	Raw Mode = iota
	// NetHTTP is Go's net/http client, which retries idempotent requests.
	NetHTTP
)

// String returns "raw" or "nethttp", the names ParseMode accepts.
func (m Mode) String() string {
	switch m {
	case Raw:
		return "raw"
	case NetHTTP:
		return "nethttp"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses "raw" or "nethttp" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "raw":
		return Raw, nil
	case "nethttp", "net/http":
		return NetHTTP, nil
	}
	return 0, fmt.Errorf("load: unknown mode %q (want raw or nethttp)", s)
}

// Method selects the requests a client sends.
type Method uint8

const (
	// GET sends GET requests without a body.
	GET Method = iota
	// POST sends POST requests with a small body (see WithBody).
	POST
	// Mixed alternates GET and POST on every client; neighbouring clients
	// start with different methods. Samples record the method actually sent.
	Mixed
)

// String returns "GET", "POST" or "both", names ParseMethod accepts.
func (m Method) String() string {
	switch m {
	case GET:
		return "GET"
	case POST:
		return "POST"
	case Mixed:
		return "both"
	}
	return fmt.Sprintf("Method(%d)", uint8(m))
}

// ParseMethod parses "GET", "POST", or "both" (also "mixed"),
// case-insensitive.
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(s) {
	case "get":
		return GET, nil
	case "post":
		return POST, nil
	case "both", "mixed":
		return Mixed, nil
	}
	return 0, fmt.Errorf("load: unknown method %q (want GET, POST or both)", s)
}

// Option configures Start and Run.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// maxClients bounds WithClients: a sample names its client in 16 bits.
const maxClients = 1<<16 - 1

// maxBody bounds WithBody: the body is meant to be small.
const maxBody = 1 << 20

type options struct {
	clients        int
	mode           Mode
	method         Method
	duration       time.Duration
	requests       int
	timeout        time.Duration
	backoff        time.Duration
	path           string
	body           []byte
	failureDetails int
	dial           DialFunc // nil: a plain TCP dial
}

func defaultOptions() options {
	return options{
		clients:        1,
		mode:           Raw,
		method:         GET,
		duration:       10 * time.Second,
		timeout:        5 * time.Second,
		backoff:        time.Millisecond,
		path:           "/",
		body:           []byte("handoff bench: a small POST body\n"),
		failureDetails: 256,
	}
}

// WithClients sets the number of concurrent clients, each on its own
// connection (default 1, at most 65535).
func WithClients(n int) Option { return optionFunc(func(o *options) { o.clients = n }) }

// WithMode selects the client (default Raw).
func WithMode(m Mode) Option { return optionFunc(func(o *options) { o.mode = m }) }

// WithMethod selects GET, POST or Mixed (default GET).
func WithMethod(m Method) Option { return optionFunc(func(o *options) { o.method = m }) }

// WithDuration bounds the load: after d, clients start no new request
// (default 10 s). It must be positive: there is no unbounded load.
func WithDuration(d time.Duration) Option { return optionFunc(func(o *options) { o.duration = d }) }

// WithRequests stops each client after n requests, successful or not
// (default 0: no count limit, only the duration).
func WithRequests(n int) Option { return optionFunc(func(o *options) { o.requests = n }) }

// WithTimeout bounds each request, dial included (default 5 s). A request
// that runs out of time fails as Timeout.
func WithTimeout(d time.Duration) Option { return optionFunc(func(o *options) { o.timeout = d }) }

// WithFailureBackoff makes a client pause for d after a failed request, so
// that a server that is down is not dialled in a tight loop (default 1 ms;
// 0 disables the pause).
func WithFailureBackoff(d time.Duration) Option {
	return optionFunc(func(o *options) { o.backoff = d })
}

// WithPath sets the request target (default "/"). It must start with "/"
// and contain only printable ASCII without spaces (escape the rest).
func WithPath(p string) Option { return optionFunc(func(o *options) { o.path = p }) }

// WithBody sets the POST body (default a 33-byte text; at most 1 MiB). The
// slice is copied.
func WithBody(b []byte) Option {
	b = append([]byte(nil), b...)
	return optionFunc(func(o *options) { o.body = b })
}

// WithFailureDetails sets how many failures each client keeps in detail,
// with their errors, in Result.Failures (default 256). Every failure is
// counted in the samples regardless.
func WithFailureDetails(n int) Option {
	return optionFunc(func(o *options) { o.failureDetails = n })
}

// DialFunc makes a client's connection to addr. It must honour ctx, whose
// deadline is the request's.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// WithDial replaces the plain TCP dial of both clients, for instance with
// one that wraps the connection in TLS (the requests stay HTTP/1.1 over
// whatever it returns). Every call counts as a dial in Result.Dials.
func WithDial(f DialFunc) Option { return optionFunc(func(o *options) { o.dial = f }) }

func (o *options) validate() error {
	switch {
	case o.clients < 1 || o.clients > maxClients:
		return fmt.Errorf("load: clients %d out of range [1, %d]", o.clients, maxClients)
	case o.mode != Raw && o.mode != NetHTTP:
		return fmt.Errorf("load: unknown %v", o.mode)
	case o.method != GET && o.method != POST && o.method != Mixed:
		return fmt.Errorf("load: unknown %v", o.method)
	case o.duration <= 0:
		return fmt.Errorf("load: duration %v must be positive", o.duration)
	case o.requests < 0:
		return fmt.Errorf("load: request count %d is negative", o.requests)
	case o.timeout <= 0:
		return fmt.Errorf("load: timeout %v must be positive", o.timeout)
	case o.backoff < 0:
		return fmt.Errorf("load: failure backoff %v is negative", o.backoff)
	case len(o.body) > maxBody:
		return fmt.Errorf("load: body of %d bytes exceeds %d", len(o.body), maxBody)
	case o.failureDetails < 0:
		return fmt.Errorf("load: failure detail count %d is negative", o.failureDetails)
	}
	if !strings.HasPrefix(o.path, "/") {
		return fmt.Errorf("load: path %q does not start with /", o.path)
	}
	for _, r := range o.path {
		if r <= ' ' || r >= 0x7f {
			return fmt.Errorf("load: path %q contains a space, a control or a non-ASCII character", o.path)
		}
	}
	return nil
}
