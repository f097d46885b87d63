package proctree

import (
	"iter"
	"maps"
	"os"
	"sync"
	"syscall"
)

// A Stray is a process of a worker's tree that is not the worker itself, watched through a
// pidfd.
type Stray struct {
	Pid int
	// Owner is the live worker whose tree it is in; 0: none (an orphan).
	Owner int
	f     *os.File
}

// Signal sends sig to s through its pidfd: os.ErrProcessDone once it has exited, os.ErrClosed
// once it is forgotten.
func (s *Stray) Signal(sig syscall.Signal) error { return Signal(s.f, sig) }

// Strays is a set of watched strays, each reported on Exits when it exits. Its methods, but
// Exits, are for one goroutine. A nil *Strays is an empty set that cannot Watch.
type Strays struct {
	m     map[int]*Stray
	exits chan *Stray
	quit  chan struct{}
	wg    sync.WaitGroup
}

// NewStrays returns an empty set.
func NewStrays() *Strays {
	return &Strays{m: make(map[int]*Stray), exits: make(chan *Stray), quit: make(chan struct{})}
}

// Len is the number of strays watched.
func (ss *Strays) Len() int {
	if ss == nil {
		return 0
	}
	return len(ss.m)
}

// Has reports whether pid is watched.
func (ss *Strays) Has(pid int) bool { return ss != nil && ss.m[pid] != nil }

// All yields the strays watched, in no order.
func (ss *Strays) All() iter.Seq[*Stray] {
	if ss == nil {
		return func(func(*Stray) bool) {}
	}
	return maps.Values(ss.m)
}

// Watch opens a pidfd for p (see Open) and watches it; owner is its live worker, or 0.
func (ss *Strays) Watch(p Proc, owner int) (*Stray, error) {
	f, err := Open(p)
	if err != nil {
		return nil, err
	}
	s := &Stray{Pid: p.Pid, Owner: owner, f: f}
	ss.m[p.Pid] = s
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		Wait(f)
		select {
		case ss.exits <- s:
		case <-ss.quit:
		}
	}()
	return s, nil
}

// Exits delivers each stray that has exited, once; pass it to Exited.
func (ss *Strays) Exits() <-chan *Stray {
	if ss == nil {
		return nil
	}
	return ss.exits
}

// Exited forgets s and closes its pidfd.
func (ss *Strays) Exited(s *Stray) {
	if ss.m[s.Pid] == s {
		delete(ss.m, s.Pid)
	}
	s.f.Close()
}

// Close forgets every stray, closes their pidfds, and returns once every watcher has. It is
// idempotent.
func (ss *Strays) Close() {
	if ss == nil {
		return
	}
	select {
	case <-ss.quit:
	default:
		close(ss.quit)
	}
	for pid, s := range ss.m {
		s.f.Close()
		delete(ss.m, pid)
	}
	ss.wg.Wait()
}
