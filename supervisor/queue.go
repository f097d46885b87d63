package supervisor

import (
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/acceptq"
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

// queueWatch samples the accept queues for the not-served check (package
// internal/acceptq). Only the run goroutine touches it.
type queueWatch struct {
	acceptq.Watch
	socks []SocketQueue // names and addresses
}

// initQueues sets up the check once the sockets are known.
func (t *table) initQueues() {
	after := t.o.metrics.stuck
	if after == 0 {
		after = defaultNotServedAfter
	}
	t.queues = queueWatch{Watch: acceptq.NewWatch(len(t.socks), after, time.Now())}
	for _, sock := range t.socks {
		t.queues.socks = append(t.queues.socks, SocketQueue{Name: sock.Name(), Addr: sock.Addr().String()})
	}
}

func (t *table) sampleQueue(sock *listener.Socket) SocketQueue {
	if f := t.o.metrics.sample; f != nil {
		return f(sock)
	}
	return sampleQueue(sock)
}

// sampleQueue asks the kernel for sock's accept queue.
func sampleQueue(sock *listener.Socket) SocketQueue {
	q, _ := acceptq.Sample(sock) // an error: not Known
	return SocketQueue{Name: sock.Name(), Addr: sock.Addr().String(), Known: q.Known, Len: q.Len, Max: q.Max}
}

// watchQueues samples the queues if it is time, and warns about the ones
// not served. onTimer calls it.
func (t *table) watchQueues(now time.Time) {
	qw := &t.queues
	if !qw.Due(now) {
		return
	}
	if t.stopping {
		qw.Off()
		return
	}
	var ready []int
	for _, sl := range t.slots {
		if sl.w != nil && sl.w.info.State == Ready {
			ready = append(ready, sl.w.info.Pid)
		}
	}
	for i, sock := range t.socks {
		q := t.sampleQueue(sock)
		sq := qw.socks[i]
		switch qw.Observe(i, acceptq.Queue{Known: q.Known, Len: q.Len, Max: q.Max}, len(ready) > 0, now) {
		case acceptq.ServedAgain:
			t.log.Info("listening socket served again", zap.String("socket", sq.Name),
				zap.String("addr", sq.Addr), zap.Uint32("queue_length", q.Len))
		case acceptq.NotServed:
			_, since := qw.State(i)
			t.log.Warn("listening socket not served: connections wait in its accept queue and no worker takes them",
				zap.String("socket", sq.Name), zap.String("addr", sq.Addr),
				zap.Uint32("queue_length", q.Len), zap.Uint32("queue_max", q.Max),
				zap.Duration("for", now.Sub(since).Round(time.Millisecond)),
				zap.Ints("ready_workers", ready), zap.Uint64("generation", t.gen))
		}
	}
}

// published returns the queues as last sampled, for Stats.
func (qw *queueWatch) published() []SocketQueue {
	qs := make([]SocketQueue, len(qw.socks))
	for i, sq := range qw.socks {
		q, since := qw.State(i)
		sq.Known, sq.Len, sq.Max = q.Known, q.Len, q.Max
		sq.NotServed, sq.NotServedSince = !since.IsZero(), since
		qs[i] = sq
	}
	return qs
}
