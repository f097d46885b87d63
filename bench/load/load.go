package load

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Errors returned by Start and Run.
var (
	// ErrNotLoopback is returned for an address that is not a loopback IP
	// literal with a port: load never leaves the machine.
	ErrNotLoopback = errors.New("load: address is not a loopback IP and port")
)

// Load is load in progress, from Start until Stop.
type Load struct {
	begin   time.Time
	clients []*client
	stop    chan struct{}
	done    chan struct{}
	timer   *time.Timer

	stopOnce   sync.Once // closes stop
	resultOnce sync.Once // sets result
	result     *Result
}

// Start starts the clients against addr, a loopback IP literal and port
// such as "127.0.0.1:8080" or "[::1]:8080". They run until the duration
// has passed, each has sent its request count, Stop is called, or ctx is
// done. Cancelling ctx interrupts requests in flight, which are then not
// recorded; Stop lets them finish. Stop must be called to release the
// clients and get the result.
func Start(ctx context.Context, addr string, opts ...Option) (*Load, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return nil, fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	addr = net.JoinHostPort(ap.Addr().Unmap().String(), fmt.Sprint(ap.Port()))

	l := &Load{
		begin: time.Now(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	l.clients = make([]*client, o.clients)
	for i := range l.clients {
		c := &client{id: uint16(i), o: &o, begin: l.begin}
		if o.mode == NetHTTP {
			c.d = newNetClient(addr, &o)
		} else {
			c.d = newRawClient(ctx, addr, &o)
		}
		l.clients[i] = c
	}
	var wg sync.WaitGroup
	for _, c := range l.clients {
		wg.Go(func() { c.run(ctx, l.stop) })
	}
	l.timer = time.AfterFunc(o.duration, l.signalStop)
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l, nil
}

// Run runs the load until the duration has passed or every client has sent
// its request count, or until ctx is done, and returns the result.
func Run(ctx context.Context, addr string, opts ...Option) (*Result, error) {
	l, err := Start(ctx, addr, opts...)
	if err != nil {
		return nil, err
	}
	<-l.Done()
	return l.Stop(), nil
}

// Done is closed once every client has stopped, whatever the reason.
func (l *Load) Done() <-chan struct{} { return l.done }

// Stop asks the clients to stop after their request in flight, waits for
// them, and returns the result. It may be called more than once and
// returns the same result each time.
func (l *Load) Stop() *Result {
	l.timer.Stop()
	l.signalStop()
	<-l.done
	l.resultOnce.Do(func() { l.result = l.collect(time.Now()) })
	return l.result
}

// signalStop tells the clients to start no new request; it runs on the
// timer's goroutine or Stop's.
func (l *Load) signalStop() { l.stopOnce.Do(func() { close(l.stop) }) }

// collect merges the clients' records; they have all returned.
func (l *Load) collect(end time.Time) *Result {
	r := &Result{Begin: l.begin, End: end, Clients: len(l.clients)}
	n, nf := 0, 0
	for _, c := range l.clients {
		n += len(c.samples)
		nf += len(c.failures)
	}
	r.Samples = make([]Sample, 0, n)
	r.Failures = make([]Failure, 0, nf)
	for _, c := range l.clients {
		r.Samples = append(r.Samples, c.samples...)
		r.Failures = append(r.Failures, c.failures...)
		r.Dials += c.d.dials()
		r.Aborted += c.aborted
		r.DroppedFailures += c.dropped
		c.samples, c.failures = nil, nil
	}
	slices.SortStableFunc(r.Samples, func(a, b Sample) int { return cmp.Compare(a.Start, b.Start) })
	slices.SortStableFunc(r.Failures, func(a, b Failure) int { return cmp.Compare(a.At, b.At) })
	return r
}

// client is one connection's worth of load, run by one goroutine.
type client struct {
	id       uint16
	o        *options
	begin    time.Time
	d        doer
	samples  []Sample
	failures []Failure
	dropped  int
	aborted  int
}

func (c *client) run(ctx context.Context, stop <-chan struct{}) {
	defer c.d.close()
	for n := 0; c.o.requests == 0 || n < c.o.requests; n++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		m := c.method(n)
		start := time.Now()
		out := c.d.do(ctx, m)
		took := time.Since(start)
		if out.kind != OK && ctx.Err() != nil {
			c.aborted++
			return
		}
		at := start.Sub(c.begin)
		c.samples = append(c.samples, Sample{Start: at, Duration: took, Client: c.id, Kind: out.kind, Method: m})
		if out.kind == OK {
			continue
		}
		if len(c.failures) < c.o.failureDetails {
			c.failures = append(c.failures, Failure{
				Client: int(c.id), At: at, Kind: out.kind, Method: m, Reused: out.reused, Err: out.err,
			})
		} else {
			c.dropped++
		}
		if c.o.backoff > 0 && !c.pause(ctx, stop) {
			return
		}
	}
}

// method returns the method of the client's n-th request.
func (c *client) method(n int) Method {
	if c.o.method != Mixed {
		return c.o.method
	}
	return Method((n + int(c.id)) % 2) // GET, POST, GET, ...; neighbours differ
}

// pause waits for the failure backoff; false means stop.
func (c *client) pause(ctx context.Context, stop <-chan struct{}) bool {
	t := time.NewTimer(c.o.backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
	case <-ctx.Done():
	}
	return false
}
