//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/worker"
)

// runHelper runs the helper named name in place of the tests and returns
// its exit status.
func runHelper(name string) int {
	switch name {
	case "echo":
		return helperEcho()
	case "exit":
		return 0
	case "silent":
		return helperSilent()
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
	return 2
}

// helperEcho is a line-echo server, nothing like HTTP: it takes its sockets
// with listener.Inherit, says READY=1, and answers each line with "PID
// line". Two lines are questions instead: "names" gets the names of its
// sockets, "env NAME" the variable's value when it started. On SIGTERM or
// SIGINT it says which on stderr, stops accepting, serves its open
// connections until their clients close them, and exits 0.
func helperEcho() int {
	if f := os.Getenv("HANDOFF_TEST_FAIL_IF"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "echo: failing at start:", f, "exists")
			return 1
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	env := os.Environ()
	ls, err := listener.Inherit()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		return 1
	}
	var names []string
	for _, l := range ls {
		names = append(names, l.Name)
	}
	answer := func(line string) string {
		if line == "names" {
			return strings.Join(names, ",")
		}
		if name, ok := strings.CutPrefix(line, "env "); ok {
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, name+"="); ok {
					return v
				}
			}
			return ""
		}
		return line
	}
	var accepting, conns sync.WaitGroup
	for _, l := range ls {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				go func() {
					defer conns.Done()
					defer c.Close()
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						if _, err := fmt.Fprintf(c, "%d %s\n", os.Getpid(), answer(sc.Text())); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	if err := worker.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, "echo: ready:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "echo %d: stopping on %v\n", os.Getpid(), <-sigs)
	for _, l := range ls {
		l.Close()
	}
	accepting.Wait()
	conns.Wait()
	return 0
}

// helperSilent serves like a server that does not speak sd_notify
// (uvicorn): it accepts on its sockets and holds each connection open,
// and never says READY=1.
func helperSilent() int {
	ls, err := listener.Inherit()
	if err != nil {
		fmt.Fprintln(os.Stderr, "silent:", err)
		return 1
	}
	var held []net.Conn
	for {
		c, err := ls[0].Accept()
		if err != nil {
			return 1
		}
		held = append(held, c)
	}
}

// echoConn is a connection to the echo helper.
type echoConn struct {
	net.Conn
	r *bufio.Reader
}

func dialEcho(t *testing.T, addr string) *echoConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &echoConn{Conn: c, r: bufio.NewReader(c)}
}

// echo sends line and returns the pid of the worker that answered.
func (c *echoConn) echo(line string) (int, error) {
	pid, got, err := c.ask(line)
	if err == nil && got != line {
		err = fmt.Errorf("sent %q, got %q", line, got)
	}
	return pid, err
}

// ask sends line and returns the pid of the worker that answered and its
// answer.
func (c *echoConn) ask(line string) (int, string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return 0, "", err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	pid, rest, ok := strings.Cut(strings.TrimSuffix(got, "\n"), " ")
	n, err := strconv.Atoi(pid)
	if !ok || err != nil {
		return 0, "", fmt.Errorf("sent %q, got %q", line, got)
	}
	return n, rest, nil
}

// load is a set of clients that send requests in a loop and never retry:
// every error counts as a failed request.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	ok      int
	failed  int
	errs    []string       // the first few failures
	by      map[string]int // responses by who answered
	waiters []loadWaiter
}

type loadWaiter struct {
	n    int
	done chan struct{}
}

func newLoad() *load { return &load{stop: make(chan struct{}), by: map[string]int{}} }

func (l *load) record(who string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, err.Error())
		}
		return
	}
	l.ok++
	l.by[who]++
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if l.ok >= w.n {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	l.waiters = kept
}

// more waits until n more requests have succeeded.
func (l *load) more(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	w := loadWaiter{n: l.ok + n, done: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	select {
	case <-w.done:
	case <-time.After(time.Until(deadline(t))):
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("load: %d requests, %d failed (%q), waiting for %d more", l.ok, l.failed, l.errs, n)
	}
}

// count returns how many requests who has answered so far.
func (l *load) count(who string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.by[who]
}

// finish stops the clients and returns the counts.
func (l *load) finish() (ok, failed int, errs []string, by map[string]int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failed, l.errs, l.by
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// startEchoLoad runs clients that each open a connection, echo one line and
// close it, in a loop: a new connection for every request.
func startEchoLoad(addr string, clients int) *load {
	l := newLoad()
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; !l.stopped(); n++ {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					l.record("", err)
					continue
				}
				ec := &echoConn{Conn: c, r: bufio.NewReader(c)}
				pid, err := ec.echo(fmt.Sprintf("client %d line %d", i, n))
				c.Close()
				l.record(strconv.Itoa(pid), err)
			}
		}()
	}
	return l
}

// startHTTPLoad runs keep-alive HTTP/1.1 clients written on a raw
// connection, so that nothing is retried: a GET in a loop, a new connection
// only when the server closed the last one with "Connection: close". who
// names the response header that says who answered.
func startHTTPLoad(network, addr string, clients int, who string) *load {
	l := newLoad()
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for !l.stopped() {
				if c == nil {
					var err error
					if c, err = net.DialTimeout(network, addr, 10*time.Second); err != nil {
						c = nil
						l.record("", err)
						continue
					}
					br = bufio.NewReader(c)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				resp, err := roundTrip(c, br)
				if err != nil {
					c.Close()
					c = nil
					l.record("", err)
					continue
				}
				l.record(resp.Header.Get(who), nil)
				if resp.Close {
					c.Close()
					c = nil
				}
			}
		}()
	}
	return l
}

// roundTrip sends one GET on c and reads its response, body included.
func roundTrip(c net.Conn, br *bufio.Reader) (*http.Response, error) {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: handoff.test\r\n\r\n"); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return resp, nil
}

// get makes one request on a new connection and returns the response.
func get(t *testing.T, network, addr string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := roundTrip(c, bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
