package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/supervisor"
)

const (
	// maxUnixPath is the longest path a unix socket can be bound to
	// (sun_path holds 108 bytes, with the terminating NUL).
	maxUnixPath = 107
	// ioTimeout bounds reading a request and writing a response.
	ioTimeout = 10 * time.Second
)

// instance is what status reports about this handoff besides the workers.
type instance struct {
	pid      int
	version  string
	started  time.Time // the process
	execTime time.Time // this program, later than started after an upgrade
	upgraded bool      // this program was started by an upgrade in place
	command  []string
}

// controlServer answers the control protocol (see control.go) on a unix
// socket: one goroutine accepts, one per connection serves.
type controlServer struct {
	ln     *net.UnixListener
	path   string
	ownDir bool // remove the directory when empty at Close
	sup    *supervisor.Supervisor
	inst   instance
	log    *zap.Logger

	ctx     context.Context // cancelled by Close: waits for Roll etc. end
	cancel  context.CancelFunc
	runDone <-chan struct{} // closed when the supervisor's Run has returned
	wg      sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// listenControl creates the control socket at path, mode 0600, in a
// directory that only this user may enter: created with mode 0700 if it is
// missing, refused if it is open to others. A socket file left at path by a
// dead handoff (or by this very process before it upgraded in place) is
// replaced; one a live process answers on is an error.
//
// Commands are answered once the supervisor runs, until runDone is closed.
func listenControl(path string, ownDir bool, sup *supervisor.Supervisor, runDone <-chan struct{}, inst instance, log *zap.Logger) (*controlServer, error) {
	if len(path) > maxUnixPath {
		return nil, fmt.Errorf("control socket %s: the path is %d bytes long; a unix socket's may be at most %d", path, len(path), maxUnixPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &controlServer{
		ln: ln, path: path, ownDir: ownDir, sup: sup, inst: inst, log: log,
		ctx: ctx, cancel: cancel, runDone: runDone, conns: make(map[net.Conn]struct{}),
	}
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

// removeStaleSocket removes a socket file at path that no process listens
// on. Anything else at path is left alone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("control socket %s: a file that is not a socket is in the way (%v); not touching it", path, fi.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("control socket %s: another handoff answers on it; stop it first, or give this one another -pidfile or -control", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: checking for a running handoff: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket: removing a stale one: %w", err)
	}
	return nil
}

// Close stops accepting, removes the socket file, ends the connections and
// waits for their goroutines. A command in progress (a roll) goes on in the
// supervisor; only the wait for it ends.
func (c *controlServer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	err := c.ln.Close() // removes the file
	c.cancel()
	c.wg.Wait()
	if c.ownDir {
		os.Remove(filepath.Dir(c.path)) // only if empty
	}
	return err
}

func (c *controlServer) serve() {
	defer c.wg.Done()
	var delay time.Duration
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: wait a little, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			c.log.Warn("control socket: accept", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
			case <-c.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if !c.track(conn) {
			conn.Close()
			return
		}
		c.wg.Add(1)
		go c.handle(conn)
	}
}

// track records conn so that Close can end it; false once closed.
func (c *controlServer) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.conns[conn] = struct{}{}
	return true
}

func (c *controlServer) untrack(conn net.Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
	conn.Close()
}

// handle reads one request from conn and writes one response.
func (c *controlServer) handle(conn *net.UnixConn) {
	defer c.wg.Done()
	defer c.untrack(conn)
	if err := checkPeer(conn); err != nil {
		c.log.Warn("control socket: connection refused", zap.Error(err))
		c.respond(conn, response{Error: "permission denied"})
		return
	}
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReaderSize(conn, maxRequestLine+2).ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		c.respond(conn, response{Error: fmt.Sprintf("request longer than %d bytes", maxRequestLine)})
		return
	case errors.Is(err, io.EOF) && len(line) > 0: // a last line without LF
	case err != nil:
		c.log.Debug("control socket: reading the request", zap.Error(err))
		return
	}
	conn.SetReadDeadline(time.Time{})
	cmd, err := parseCommand(line)
	if err != nil {
		c.respond(conn, response{Error: err.Error()})
		return
	}
	if cmd.op != opStatus {
		c.log.Info("control command", zap.Stringer("command", cmd))
	}
	c.respond(conn, c.do(cmd))
}

// do carries out cmd. An upgrade that succeeds does not return: the
// process execs the new program, and the connection ends with it.
func (c *controlServer) do(cmd command) response {
	if err := c.awaitRun(); err != nil {
		return response{Error: err.Error()}
	}
	var err error
	switch {
	case cmd.op == opReload:
		err = c.sup.Roll(c.ctx)
	case cmd.op == opUpgrade:
		err = c.sup.Upgrade(c.ctx)
	case cmd.op == opScale && cmd.relative:
		_, err = c.sup.ScaleBy(c.ctx, cmd.workers)
	case cmd.op == opScale:
		err = c.sup.Scale(c.ctx, cmd.workers)
	}
	if err != nil {
		return response{Error: err.Error()}
	}
	return response{OK: true, Status: c.status()}
}

// awaitRun waits until the supervisor's Run serves requests: before, Stats
// is zero and the other methods fail with ErrClosed.
func (c *controlServer) awaitRun() error {
	select {
	case <-c.sup.Running():
		return nil
	case <-c.runDone:
		return supervisor.ErrClosed
	case <-c.ctx.Done():
		return supervisor.ErrClosed
	}
}

func (c *controlServer) respond(conn net.Conn, r response) {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen: plain types only
		b = []byte(`{"ok":false,"error":"encoding the response"}`)
	}
	conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(append(b, '\n')); err != nil {
		c.log.Debug("control socket: writing the response", zap.Error(err))
	}
}

// status is the supervisor's table as the control protocol reports it.
func (c *controlServer) status() *statusReport {
	st := c.sup.Stats()
	now := time.Now()
	r := &statusReport{
		Pid: c.inst.pid, Version: c.inst.version, Started: c.inst.started, ExecTime: c.inst.execTime,
		Upgraded:   c.inst.upgraded,
		Command:    c.inst.command,
		Generation: st.Generation, Rolling: st.Rolling,
		Retiring: len(st.Retiring),
		Workers:  make([]workerReport, 0, len(st.Workers)),

		Starts: st.Starts, Restarts: st.Restarts, StartFailures: st.StartFailures,
		Exits:    exitsReport(st.Exits),
		Rolls:    rollsReport(st.Rolls),
		Upgrades: upgradeReport(st.Upgrades),
		Handover: handoverReport(st.Handover),
		NotifyDropped: notifyReport{
			Foreign: st.NotifyDropped.Foreign, NoCredentials: st.NotifyDropped.NoCredentials,
			Oversized: st.NotifyDropped.Oversized, Malformed: st.NotifyDropped.Malformed,
			FdsClosed: st.NotifyDropped.FdsClosed, ReadErrors: st.NotifyDropped.ReadErrors,
		},
	}
	for _, w := range st.Workers {
		r.Workers = append(r.Workers, workerReportOf(w, now))
	}
	addStatus(r, st, now)
	return r
}

func workerReportOf(w supervisor.WorkerInfo, now time.Time) workerReport {
	wr := workerReport{
		Slot: w.Slot, Pid: w.Pid, Generation: w.Generation, State: w.State.String(),
		Started: w.Started, UptimeSeconds: now.Sub(w.Started).Seconds(), Restarts: w.Restarts,
		Status: w.Status,
	}
	if !w.RetiredAt.IsZero() {
		wr.DrainingSeconds = now.Sub(w.RetiredAt).Seconds()
	}
	return wr
}

// addStatus adds what status shows beyond the workers: retiring workers,
// slots, sockets, the last roll.
func addStatus(r *statusReport, st supervisor.Stats, now time.Time) {
	r.RetiringWorkers = []workerReport{}
	for _, w := range st.Retiring {
		wr := workerReportOf(w, now)
		wr.State = "retiring"
		r.RetiringWorkers = append(r.RetiringWorkers, wr)
	}
	r.GenerationsAlive = st.GenerationsAlive()
	r.Slots = []slotReport{}
	for _, sl := range st.Slots {
		sr := slotReport{Slot: sl.Index, Failures: sl.Failures, Restarts: sl.Restarts, Vetoed: sl.Vetoed, CrashLooping: sl.CrashLooping}
		if !sl.FailingSince.IsZero() {
			t := sl.FailingSince
			sr.FailingSince = &t
		}
		if !sl.NextRetry.IsZero() {
			t := sl.NextRetry
			sr.NextRetry, sr.RetryInSecs = &t, max(t.Sub(now).Seconds(), 0)
		}
		if e := sl.LastExit; e != nil {
			sr.LastExit = &exitReport{Pid: e.Pid, Generation: e.Generation, Status: e.Status, Reason: e.Reason, Time: e.Time}
		}
		r.Slots = append(r.Slots, sr)
	}
	r.Sockets = []socketReport{}
	for _, q := range st.Sockets {
		sr := socketReport{Name: q.Name, Addr: q.Addr, Known: q.Known, QueueLength: q.Len, QueueMax: q.Max, NotServed: q.NotServed}
		if q.NotServed {
			t := q.NotServedSince
			sr.NotServedSince = &t
		}
		r.Sockets = append(r.Sockets, sr)
	}
	if lr := st.LastRoll; lr != nil {
		r.LastRoll = &rollReport{Generation: lr.Generation, Result: string(lr.Result), Error: lr.Error, Started: lr.Started, TookSeconds: lr.Took.Seconds()}
	}
	r.MetricsAddr = st.MetricsAddr
}
