package acceptq

import "time"

// Queue is a listening socket's accept queue as the kernel reports it.
type Queue struct {
	// Known tells whether the kernel reported the queue.
	Known bool
	// Len is the number of connections waiting to be accepted; Max, the most the kernel
	// queues (the listen backlog).
	Len, Max uint32
}

// Watch tells, from samples of several sockets' queues, which ones are not served: non-empty,
// without going down, for a given time while someone should be accepting. Its zero value is
// off. It is not safe for concurrent use.
type Watch struct {
	after, period time.Duration
	next          time.Time // the next sample; zero when off
	socks         []sockState
}

type sockState struct {
	q      Queue
	since  time.Time // non-empty and not going down since; zero if not
	warned bool      // NotServed was returned, and ServedAgain not yet
}

// A Verdict is what one sample changed.
type Verdict int8

const (
	// Unchanged: nothing to say.
	Unchanged Verdict = iota
	// NotServed: the queue has just been found not served.
	NotServed
	// ServedAgain: a queue found not served moves again, or no longer matters.
	ServedAgain
)

// NewWatch watches n sockets, from now, each found not served once its queue has stayed
// non-empty without going down for after; after <= 0, or no sockets, makes a Watch that is off.
func NewWatch(n int, after time.Duration, now time.Time) Watch {
	w := Watch{socks: make([]sockState, n)}
	if after <= 0 || n == 0 {
		return w
	}
	// Several samples within the time, so that a queue that goes down between two of them
	// is seen moving.
	w.after = after
	w.period = min(max(after/10, 10*time.Millisecond), time.Second)
	w.next = now.Add(w.period)
	return w
}

// Next is when the next sample is due; zero when the watch is off.
func (w *Watch) Next() time.Time { return w.next }

// Due reports whether it is time to sample, and if so sets the time of the next one.
func (w *Watch) Due(now time.Time) bool {
	if w.next.IsZero() || now.Before(w.next) {
		return false
	}
	w.next = now.Add(w.period)
	return true
}

// Off stops the watch: Due is false from now on.
func (w *Watch) Off() { w.next = time.Time{} }

// Observe takes socket i's sample q at now; serving tells whether anyone should be accepting
// (workers are ready). A queue that is unknown, empty, going down, or not expected to be
// served is served.
func (w *Watch) Observe(i int, q Queue, serving bool, now time.Time) Verdict {
	s := &w.socks[i]
	prev := s.q
	s.q = q
	switch {
	case !q.Known || q.Len == 0 || !serving || q.Len < prev.Len:
		v := Unchanged
		if s.warned {
			v = ServedAgain
		}
		s.since, s.warned = time.Time{}, false
		if q.Known && q.Len > 0 && serving {
			s.since = now // it moved: count from now
		}
		return v
	case s.since.IsZero():
		s.since = now
	case !s.warned && now.Sub(s.since) >= w.after:
		s.warned = true
		return NotServed
	}
	return Unchanged
}

// State returns socket i's last sample and, if it is found not served, since when.
func (w *Watch) State(i int) (q Queue, notServedSince time.Time) {
	s := w.socks[i]
	if s.warned {
		return s.q, s.since
	}
	return s.q, time.Time{}
}
