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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// maxResponse bounds a response line: a status of thousands of workers fits.
const maxResponse = 4 << 20

// redialFor is how long a client keeps trying to reach a control socket
// that is missing or refuses connections while its process lives: the
// window in which an upgraded program recreates it.
const redialFor = 5 * time.Second

// target is the handoff a control command goes to.
type target struct {
	pidfile string
	pid     int // from the pid file; 0 when only -control was given
	path    string
}

// runClient runs a control subcommand and returns the exit status.
func runClient(cfg *clientConfig, stdout, stderr io.Writer) int {
	if cfg.watch > 0 {
		return watchStatus(cfg, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	st, err := client(ctx, cfg, stdout)
	if cfg.json {
		r := response{OK: err == nil, Status: st}
		if err != nil {
			r.Error = err.Error()
		}
		b, _ := json.Marshal(r)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if err != nil {
		fmt.Fprintf(stderr, "handoff %s: %v\n", cfg.op, err)
		return exitFailure
	}
	if !cfg.json {
		printStatus(stdout, st)
	}
	return exitOK
}

// client carries out cfg's command and returns the status after it. It
// says what happened on out unless -json was given.
func client(ctx context.Context, cfg *clientConfig, out io.Writer) (*statusReport, error) {
	t, err := findTarget(cfg)
	if err != nil {
		return nil, err
	}
	say := func(format string, a ...any) {
		if !cfg.json {
			fmt.Fprintf(out, format+"\n", a...)
		}
	}
	switch cfg.op {
	case opUpgrade:
		return upgrade(ctx, t, say)
	case opReload:
		st, err := t.request(ctx, command{op: opReload})
		if err != nil {
			return nil, err
		}
		say("rolled to generation %d", st.Generation)
		return st, nil
	case opScale:
		st, err := t.request(ctx, command{op: opScale, workers: cfg.workers, relative: cfg.relative})
		if err != nil {
			return nil, err
		}
		if cfg.relative {
			say("scaling by %+d workers", cfg.workers)
		} else {
			say("scaling to %d workers", cfg.workers)
		}
		return st, nil
	}
	return t.request(ctx, command{op: opStatus})
}

// findTarget finds the control socket from -control, or from the pid file.
// A pid file that names no live process is stale.
func findTarget(cfg *clientConfig) (*target, error) {
	t := &target{pidfile: cfg.pidfile, path: cfg.control}
	if cfg.pidfile != "" {
		pid, err := readPidfile(cfg.pidfile)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no pid file at %s: is handoff running with -pidfile %s?", cfg.pidfile, cfg.pidfile)
		}
		if err != nil {
			return nil, err
		}
		if !processAlive(pid) {
			return nil, fmt.Errorf("stale pid file %s: process %d is not running", cfg.pidfile, pid)
		}
		t.pid = pid
		if t.path == "" {
			t.path = defaultControlPath(cfg.pidfile)
		}
	}
	return t, nil
}

// request sends cmd and returns the status in the answer, or the error the
// answer carries.
//
// A status request that ends without an answer is sent again for a while:
// during an upgrade in place the connection may be queued on the old
// program's socket just before the exec closes it. The other commands are
// not repeated, since the one sent may have been carried out.
func (t *target) request(ctx context.Context, cmd command) (*statusReport, error) {
	give := time.Now().Add(redialFor)
	for {
		conn, err := t.dial(ctx)
		if err != nil {
			return nil, err
		}
		r, err := exchange(ctx, conn, cmd)
		conn.Close()
		if closedWithoutAnswer(err) {
			if cmd.op == opStatus && time.Now().Before(give) && (t.pid == 0 || processAlive(t.pid)) {
				continue
			}
			return nil, fmt.Errorf("%s: the connection closed without an answer", t.path)
		}
		if err != nil {
			return nil, err
		}
		return t.check(r)
	}
}

// check turns an answer into its status or its error.
func (t *target) check(r *response) (*statusReport, error) {
	switch {
	case !r.OK && r.Error != "":
		return nil, errors.New(r.Error)
	case !r.OK || r.Status == nil:
		return nil, errors.New("the answer holds neither a status nor an error")
	case t.pid != 0 && r.Status.Pid != t.pid:
		return nil, fmt.Errorf("pid file %s names process %d, but process %d answers on %s", t.pidfile, t.pid, r.Status.Pid, t.path)
	}
	return r.Status, nil
}

// exchange writes cmd on conn and reads the answer.
func exchange(ctx context.Context, conn net.Conn, cmd command) (*response, error) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, cmd.String()+"\n"); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(io.LimitReader(conn, maxResponse)).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no answer: %w", ctx.Err())
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, fmt.Errorf("answer cut short after %d bytes", len(line))
		}
		return nil, err
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("answer is not the control protocol's: %w", err)
	}
	return &r, nil
}

// dial connects to the control socket. While the process of the pid file
// lives, a socket that is missing or refuses connections is tried again for
// a while: an upgraded program is recreating it.
func (t *target) dial(ctx context.Context) (net.Conn, error) {
	give := time.Now().Add(redialFor)
	wait := 10 * time.Millisecond
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", t.path)
		if err == nil {
			return conn, nil
		}
		switch {
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("%w: only the user handoff runs as (and root) may use its control socket", err)
		case !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED):
			return nil, err
		case t.pid == 0: // no process to wait for
			return nil, err
		case !processAlive(t.pid):
			return nil, fmt.Errorf("process %d has exited (%v)", t.pid, err)
		case time.Now().After(give):
			if errors.Is(err, os.ErrNotExist) && t.pidfile != "" {
				return nil, fmt.Errorf("no control socket at %s: was handoff started with -control? then give the same -control here", t.path)
			}
			return nil, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// upgrade asks for an upgrade in place and checks that it happened: the
// connection ends when the process execs the new program, which then
// answers on a control socket of its own, at the same path, with the same
// pid and a later start of its program.
func upgrade(ctx context.Context, t *target, say func(string, ...any)) (*statusReport, error) {
	before, err := t.request(ctx, command{op: opStatus})
	if err != nil {
		return nil, err
	}
	if t.pid == 0 {
		t.pid = before.Pid // so that the answer after is checked against it
	}
	conn, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	r, err := exchange(ctx, conn, command{op: opUpgrade})
	conn.Close()
	switch {
	case err == nil:
		if _, err := t.check(r); err != nil {
			return nil, fmt.Errorf("handoff keeps running as it was: %w", err)
		}
		return nil, errors.New("the supervisor answered instead of re-executing itself")
	case !closedWithoutAnswer(err):
		return nil, err
	}
	// The connection ended without an answer, as it does when the process
	// execs: check that it did, and that the new program runs.
	after, err := t.request(ctx, command{op: opStatus})
	if err != nil {
		return nil, fmt.Errorf("the connection ended without an answer, as it does when the supervisor re-executes, but no program answers since: %w", err)
	}
	if !after.ExecTime.After(before.ExecTime) {
		return nil, fmt.Errorf("the connection ended without an answer, but the program that answers now started at %s, as before: the upgrade did not happen", before.ExecTime.Format(time.RFC3339Nano))
	}
	say("upgrade started; the supervisor re-executed (pid %d)", before.Pid)
	adopted := 0
	for _, w := range after.Workers {
		if slices.ContainsFunc(before.Workers, func(b workerReport) bool { return b.Pid == w.Pid }) {
			adopted++
		}
	}
	say("upgraded in place: pid %d runs handoff %s (was %s); %d of %d workers adopted", after.Pid, after.Version, before.Version, adopted, len(before.Workers))
	return after, nil
}

// printStatus writes st for a person: a summary, the workers by slot with
// their last exits, the retiring workers, and the listening sockets.
func printStatus(w io.Writer, st *statusReport) {
	now := time.Now()
	since := ""
	if st.Upgraded {
		since = fmt.Sprintf("; upgraded in place %s ago", fmtDuration(now.Sub(st.ExecTime)))
	}
	fmt.Fprintf(w, "handoff %s, pid %d, up %s%s\n", st.Version, st.Pid, fmtDuration(now.Sub(st.Started)), since)
	fmt.Fprintf(w, "command:    %s\n", strings.Join(st.Command, " "))
	ready := 0
	for _, wr := range st.Workers {
		if wr.State == "ready" {
			ready++
		}
	}
	rolling := ""
	if st.Rolling {
		rolling = ", rolling to the next"
	}
	alive := ""
	if st.GenerationsAlive > 1 {
		alive = fmt.Sprintf(" (%d generations alive)", st.GenerationsAlive)
	}
	fmt.Fprintf(w, "generation: %d%s%s\n", st.Generation, alive, rolling)
	fmt.Fprintf(w, "workers:    %d, %d ready", len(st.Workers), ready)
	if st.Retiring > 0 {
		fmt.Fprintf(w, ", %d more retiring", st.Retiring)
	}
	e := st.Exits
	fmt.Fprintf(w, "\nexits:      %d clean, %d failed, %d by signal, %d by the watchdog (not asked for); %d recycled, %d retired\n",
		e.Clean, e.Failed, e.Signal, e.Watchdog, e.Recycled, e.Retired)
	fmt.Fprintf(w, "starts:     %d; %d restarts, %d start failures\n", st.Starts, st.Restarts, st.StartFailures)
	fmt.Fprintf(w, "rolls:      %d completed, %d rolled back, %d failed; upgrades: %d completed, %d failed\n",
		st.Rolls.Completed, st.Rolls.RolledBack, st.Rolls.Failed, st.Upgrades.Completed, st.Upgrades.Failed)
	if h := st.Handover; h != (handoverReport{}) {
		fmt.Fprintf(w, "hand-over:  %d connections handed, %d returned, %d failed; %d refused, %d in flight\n",
			h.Handed, h.Returned, h.Failed, h.Refused, h.InFlight)
	}
	if d := st.NotifyDropped; d != (notifyReport{}) {
		fmt.Fprintf(w, "notify:     dropped %d foreign, %d without credentials, %d oversized, %d malformed; %d fds closed, %d read errors\n",
			d.Foreign, d.NoCredentials, d.Oversized, d.Malformed, d.FdsClosed, d.ReadErrors)
	}
	if lr := st.LastRoll; lr != nil {
		fmt.Fprintf(w, "last roll:  to generation %d %s in %s, %s ago", lr.Generation, lr.Result,
			fmtDuration(time.Duration(lr.TookSeconds*float64(time.Second))), fmtDuration(now.Sub(lr.Started)))
		if lr.Error != "" {
			fmt.Fprintf(w, ": %s", lr.Error)
		}
		fmt.Fprintln(w)
	}
	if st.MetricsAddr != "" {
		fmt.Fprintf(w, "metrics:    http://%s/metrics\n", st.MetricsAddr)
	}
	var looping []string
	var failing time.Time
	for _, sl := range st.Slots {
		if sl.CrashLooping && sl.FailingSince != nil {
			looping = append(looping, strconv.Itoa(sl.Slot))
			if failing.IsZero() || sl.FailingSince.Before(failing) {
				failing = *sl.FailingSince
			}
		}
	}
	if len(looping) > 0 {
		fmt.Fprintf(w, "WARNING:    slot %s crash-looping for %s: %d of %d workers ready; see LAST EXIT below and the log\n",
			strings.Join(looping, ", "), fmtDuration(now.Sub(failing)), ready, len(st.Slots))
	}
	for _, q := range st.Sockets {
		if q.NotServed && q.NotServedSince != nil {
			fmt.Fprintf(w, "WARNING:    socket %s (%s) is not served: %d connections wait in its accept queue and no worker has taken one for %s\n",
				q.Name, q.Addr, q.QueueLength, fmtDuration(now.Sub(*q.NotServedSince)))
		}
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tUPTIME\tRESTARTS\tLAST EXIT\tSTATUS")
	slots := map[int]slotReport{}
	for _, sl := range st.Slots {
		slots[sl.Slot] = sl
	}
	seen := map[int]bool{}
	for _, wr := range st.Workers {
		seen[wr.Slot] = true
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\n", wr.Slot, wr.Pid, wr.Generation, wr.State,
			fmtDuration(time.Duration(wr.UptimeSeconds*float64(time.Second))), wr.Restarts, lastExit(slots[wr.Slot], now), wr.Status)
	}
	for _, sl := range st.Slots {
		if seen[sl.Slot] {
			continue
		}
		state := "empty"
		switch {
		case sl.Vetoed:
			state = "vetoed"
		case sl.NextRetry != nil:
			state = fmt.Sprintf("backoff, retry in %s (%d failures)", fmtDuration(time.Duration(sl.RetryInSecs*float64(time.Second))), sl.Failures)
		}
		fmt.Fprintf(tw, "%d\t-\t-\t%s\t-\t%d\t%s\t\n", sl.Slot, state, sl.Restarts, lastExit(sl, now))
	}
	tw.Flush()
	if len(st.RetiringWorkers) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RETIRING\tPID\tGEN\tDRAINING\tUPTIME\tSTATUS")
		for _, wr := range st.RetiringWorkers {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\n", wr.Slot, wr.Pid, wr.Generation,
				fmtDuration(time.Duration(wr.DrainingSeconds*float64(time.Second))),
				fmtDuration(time.Duration(wr.UptimeSeconds*float64(time.Second))), wr.Status)
		}
		tw.Flush()
	}
	if len(st.Sockets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SOCKET\tADDRESS\tQUEUE\tMAX\tSERVED")
		for _, q := range st.Sockets {
			queue, mx, served := "?", "?", "yes"
			if q.Known {
				queue, mx = strconv.FormatUint(uint64(q.QueueLength), 10), strconv.FormatUint(uint64(q.QueueMax), 10)
			}
			if q.NotServed {
				served = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", q.Name, q.Addr, queue, mx, served)
		}
		tw.Flush()
	}
}

// lastExit describes a slot's last exit: "signal: killed (signal) 3.2s ago".
func lastExit(sl slotReport, now time.Time) string {
	e := sl.LastExit
	if e == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s) %s ago", e.Status, e.Reason, fmtDuration(now.Sub(e.Time)))
}

// fmtDuration writes d for people: 850ms, 12.3s, 5m03s, 2h05m, 3d04h.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// closedWithoutAnswer tells whether err is a connection that ended without
// an answer: the peer closed it (EOF, ECONNRESET), or was gone before the
// request was written (EPIPE: a connection queued on the control socket of
// a program that then exec'd).
func closedWithoutAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
