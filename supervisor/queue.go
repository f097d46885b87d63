package supervisor

import (
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
)

// SocketQueue is a listening socket's accept queue as the kernel reports
// it, and whether it is being served.
type SocketQueue struct {
	Name, Addr string
	// Known tells whether the kernel reported the queue: it does for TCP
	// (TCP_INFO) and unix stream sockets (sock_diag) on Linux.
	Known bool
	// Len is the number of connections waiting to be accepted; Max, the
	// most the kernel queues (the listen backlog).
	Len, Max uint32
	// NotServed tells that the queue has stayed non-empty, without going
	// down, for the WithNotServedAfter time while workers were ready: the
	// workers do not accept on this socket. NotServedSince is when that
	// began.
	NotServed      bool
	NotServedSince time.Time
}

// defaultNotServedAfter is WithNotServedAfter's default.
const defaultNotServedAfter = 10 * time.Second

// WithNotServedAfter sets how long a listening socket's accept queue may
// stay non-empty without going down, while workers are ready, before the
// supervisor warns that the socket is not served (default 10s; 0 turns the
// check off). It warns once, naming the socket and the workers, until the
// queue moves again; Stats (so the metrics and the status) shows it meanwhile. This
// catches a worker that says it is ready but never accepts on the socket it
// was passed (a server that ignores LISTEN_FDS): clients then wait in the
// kernel's queue and nothing else fails.
func WithNotServedAfter(d time.Duration) Option {
	return optionFunc(func(o *options) {
		o.metrics.stuck = d
		if d == 0 {
			o.metrics.stuck = -1
		}
	})
}

// queueWatch samples the accept queues for the not-served check. Only the
// run goroutine touches it.
type queueWatch struct {
	after, period time.Duration // after 0: off
	next          time.Time     // the next sample; zero when off
	socks         []sockWatch
}

type sockWatch struct {
	q      SocketQueue
	since  time.Time // non-empty and not going down since; zero if not
	warned bool
}

// initQueues sets up the check once the sockets are known.
func (t *table) initQueues() {
	qw := &t.queues
	qw.socks = make([]sockWatch, len(t.socks))
	for i, sock := range t.socks {
		qw.socks[i].q = SocketQueue{Name: sock.Name(), Addr: sock.Addr().String()}
	}
	switch d := t.o.metrics.stuck; {
	case d < 0 || len(t.socks) == 0:
		return
	case d == 0:
		qw.after = defaultNotServedAfter
	default:
		qw.after = d
	}
	// Several samples within the time, so that a queue that goes down
	// between two of them is seen moving.
	qw.period = min(max(qw.after/10, 10*time.Millisecond), time.Second)
	qw.next = time.Now().Add(qw.period)
}

func (t *table) sampleQueue(sock *listener.Socket) SocketQueue {
	if f := t.o.metrics.sample; f != nil {
		return f(sock)
	}
	return sampleQueue(sock)
}

// watchQueues samples the queues if it is time, and warns about the ones
// not served. onTimer calls it.
func (t *table) watchQueues(now time.Time) {
	qw := &t.queues
	if qw.next.IsZero() || now.Before(qw.next) {
		return
	}
	qw.next = now.Add(qw.period)
	if t.stopping {
		qw.next = time.Time{}
		return
	}
	var ready []int
	for _, sl := range t.slots {
		if sl.w != nil && sl.w.info.State == Ready {
			ready = append(ready, sl.w.info.Pid)
		}
	}
	for i, sock := range t.socks {
		sw := &qw.socks[i]
		q := t.sampleQueue(sock)
		prev := sw.q
		sw.q.Known, sw.q.Len, sw.q.Max = q.Known, q.Len, q.Max
		switch {
		case !q.Known || q.Len == 0 || len(ready) == 0 || q.Len < prev.Len:
			if sw.warned {
				t.log.Info("listening socket served again", zap.String("socket", sw.q.Name),
					zap.String("addr", sw.q.Addr), zap.Uint32("queue_length", q.Len))
			}
			sw.since, sw.warned = time.Time{}, false
			sw.q.NotServed, sw.q.NotServedSince = false, time.Time{}
			if q.Known && q.Len > 0 && len(ready) > 0 {
				sw.since = now // it moved: count from now
			}
		case sw.since.IsZero():
			sw.since = now
		case !sw.warned && now.Sub(sw.since) >= qw.after:
			sw.warned = true
			sw.q.NotServed, sw.q.NotServedSince = true, sw.since
			t.log.Warn("listening socket not served: connections wait in its accept queue and no worker takes them",
				zap.String("socket", sw.q.Name), zap.String("addr", sw.q.Addr),
				zap.Uint32("queue_length", q.Len), zap.Uint32("queue_max", q.Max),
				zap.Duration("for", now.Sub(sw.since).Round(time.Millisecond)),
				zap.Ints("ready_workers", ready), zap.Uint64("generation", t.gen))
		}
	}
}

// published returns the queues as last sampled, for Stats.
func (qw *queueWatch) published() []SocketQueue {
	qs := make([]SocketQueue, len(qw.socks))
	for i, sw := range qw.socks {
		qs[i] = sw.q
	}
	return qs
}
