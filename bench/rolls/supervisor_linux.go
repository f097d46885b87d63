package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"
	"golang.org/x/sys/unix"
)

// How long the harness waits for the supervisor's tree to go away.
const (
	stopTimeout       = 30 * time.Second // SIGTERM to exit, before SIGKILL
	defaultLogTimeout = 10 * time.Second // exit to the last process closing the log
	orphanKillTimeout = 5 * time.Second  // SIGKILL of leftovers to the log's end
)

// buildExample builds the example supervisor into dir. The bench module
// requires the main module (replaced by ../), so this works from anywhere
// inside bench/.
func buildExample(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "example")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/handoff-dev/handoff/example")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the example (run from inside bench/, or pass -bin): %w\n%s", err, out)
	}
	return bin, nil
}

// supervisor is the example supervisor under test, its log and its exit.
type supervisor struct {
	cmd     *exec.Cmd
	events  *eventQueue
	logDone chan struct{} // closed when the log reader has seen EOF
	logR    *os.File
	exited  chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result, read after exited
	gen     uint64        // the generation serving

	// logTimeout bounds the wait, after the supervisor's exit, for the
	// last process of its tree to close the log.
	logTimeout time.Duration
}

// startSupervisor starts bin with -workers n on 127.0.0.1:0 and follows
// its JSON log (stderr, a pipe). Workers inherit the pipe, so its end
// means every process of the tree has exited. Lines are copied to echo
// when it is not nil.
func startSupervisor(bin string, workers int, echo io.Writer) (*supervisor, error) {
	// Orphans of the supervisor's tree become our children, so that cleanup
	// can find, kill and reap whatever it left behind.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-workers", strconv.Itoa(workers))
	cmd.Stderr = w // stdin and stdout: /dev/null
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting the supervisor: %w", err)
	}
	w.Close()
	s := &supervisor{
		cmd:     cmd,
		events:  newEventQueue(),
		logDone: make(chan struct{}),
		logR:    r,
		exited:  make(chan struct{}),
		gen:     1,

		logTimeout: defaultLogTimeout,
	}
	go s.readLog(echo)
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

func (s *supervisor) readLog(echo io.Writer) {
	defer close(s.logDone)
	defer s.events.close()
	sc := bufio.NewScanner(s.logR)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if echo != nil {
			fmt.Fprintln(echo, line)
		}
		s.events.push(parseEvent(line))
	}
}

// await returns the first event for which match says done, failing on an
// error event, the end of the log, or ctx.
func (s *supervisor) await(ctx context.Context, what string, match func(event) (bool, error)) (event, error) {
	for {
		ev, err := s.events.next(ctx)
		if err != nil {
			return ev, fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ev.Msg == msgExiting {
			return ev, fmt.Errorf("waiting for %s: the supervisor is exiting: %s", what, ev.Error)
		}
		done, err := match(ev)
		if err != nil {
			return ev, fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return ev, nil
		}
	}
}

// waitReady waits for the listening address and n ready workers of the
// first generation.
func (s *supervisor) waitReady(ctx context.Context, n int) (string, error) {
	var addr string
	ready := 0
	_, err := s.await(ctx, fmt.Sprintf("the address and %d ready workers", n), func(ev event) (bool, error) {
		switch {
		case ev.Msg == msgListening:
			addr = ev.Addr
		case ev.Msg == msgWorkerReady && ev.Generation == s.gen:
			ready++
		}
		return addr != "" && ready >= n, nil
	})
	return addr, err
}

// roll sends SIGHUP and waits for "roll complete" of the next generation.
// It returns when the signal was sent, when the roll completed, and the
// supervisor's own measure.
func (s *supervisor) roll(ctx context.Context) (sent, done time.Time, took time.Duration, err error) {
	gen := s.gen + 1
	sent = time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return sent, sent, 0, fmt.Errorf("sending SIGHUP: %w", err)
	}
	ev, err := s.await(ctx, fmt.Sprintf("roll complete of generation %d", gen), func(ev event) (bool, error) {
		switch {
		case ev.rollFailed():
			return false, fmt.Errorf("roll to generation %d failed: %s", ev.Generation, ev.Error)
		case ev.Msg == msgRollComplete && ev.Generation == gen:
			return true, nil
		case ev.Msg == msgRollComplete:
			return false, fmt.Errorf("roll complete of generation %d, expected %d", ev.Generation, gen)
		}
		return false, nil
	})
	done = time.Now()
	if err != nil {
		return sent, done, 0, err
	}
	s.gen = gen
	return sent, done, ev.took(), nil
}

// stop stops the supervisor gracefully and makes sure that nothing of its
// tree is left: SIGTERM, SIGKILL after stopTimeout; then the log must end,
// which it does when every worker has exited; orphans are killed and
// reaped. It returns the supervisor's exit error (nil for status 0) joined
// with anything that went wrong. It may be called more than once.
func (s *supervisor) stop() error {
	var errs []error
	select {
	case <-s.exited:
	default:
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("sending SIGTERM: %w", err))
		}
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			errs = append(errs, fmt.Errorf("the supervisor did not exit within %v of SIGTERM; killed", stopTimeout))
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.waitErr != nil {
		errs = append(errs, fmt.Errorf("supervisor: %w", s.waitErr))
	}
	select {
	case <-s.logDone:
	case <-time.After(s.logTimeout):
		errs = append(errs, fmt.Errorf("processes still held the log %v after the supervisor exited", s.logTimeout))
	}
	switch alive, zombies, err := orphans.Sweep(); {
	case err != nil:
		errs = append(errs, fmt.Errorf("looking for orphans: %w", err))
	case alive+zombies > 0:
		errs = append(errs, fmt.Errorf("%d processes outlived the supervisor; killed and reaped", alive+zombies))
	}
	select {
	case <-s.logDone:
	case <-time.After(orphanKillTimeout):
		s.logR.Close() // unblock the reader; someone outside our tree holds the pipe
		<-s.logDone
	}
	s.logR.Close()
	return errors.Join(errs...)
}
