//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// traffic counts the requests of a set of clients and keeps the first
// failures.
type traffic struct {
	mu     sync.Mutex
	ok     int
	failed int
	errs   []string
	cond   *sync.Cond // signalled on every success

	dials  atomic.Int64 // connections its transports dialled
	closed atomic.Int64 // of them, closed by the server: a read ended before the client closed it, or a response said "Connection: close"
}

// transport returns a keep-alive transport whose connections are counted
// in tr.dials and tr.closed.
func (tr *traffic) transport(maxIdle int) *http.Transport {
	var d net.Dialer
	return &http.Transport{MaxIdleConnsPerHost: maxIdle, DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tr.dials.Add(1)
			return &countedConn{Conn: c, tr: tr}, nil
		}}
}

// countedConn tells a connection the server closed from one the client
// closed: the transport's reader sees the server's close (EOF or a reset)
// before the client calls Close.
type countedConn struct {
	net.Conn
	tr     *traffic
	client atomic.Bool // the client closed it
	once   sync.Once
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !c.client.Load() {
		c.once.Do(func() { c.tr.closed.Add(1) })
	}
	return n, err
}

func (c *countedConn) Close() error {
	c.client.Store(true)
	return c.Conn.Close()
}

func newTraffic() *traffic {
	tr := &traffic{}
	tr.cond = sync.NewCond(&tr.mu)
	return tr
}

// do makes one request with c and records it.
func (tr *traffic) do(c *http.Client, req *http.Request, what string) {
	resp, err := c.Do(req)
	if err == nil {
		if resp.Close {
			tr.closed.Add(1) // the transport closes it: the client's Close, asked for by the server
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.record(err, resp, req.Context(), what)
}

// record is do's bookkeeping, for a response already read.
func (tr *traffic) record(err error, resp *http.Response, ctx context.Context, what string) {
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil && ctx.Err() != nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		tr.failed++
		if len(tr.errs) < 10 {
			tr.errs = append(tr.errs, what+": "+err.Error())
		}
		return
	}
	tr.ok++
	tr.cond.Broadcast()
}

// waitMore waits until n more requests have succeeded, or fails the test at
// its deadline.
func (tr *traffic) waitMore(t *testing.T, n int) {
	t.Helper()
	var want int
	waitCond(t, tr.cond, func() { want = tr.ok + n }, func() bool { return tr.ok >= want }, func() string {
		return fmt.Sprintf("traffic stalled: %d successes, %d failures: %q", tr.ok, tr.failed, tr.errs)
	})
}

// waitCond waits on c until done, with c.L held: start runs first, done
// after each wake-up; at the test's deadline it fails with stalled's
// message.
func waitCond(t *testing.T, c *sync.Cond, start func(), done func() bool, stalled func() string) {
	t.Helper()
	stop := time.AfterFunc(time.Until(deadline(t)), func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	defer stop.Stop()
	c.L.Lock()
	defer c.L.Unlock()
	for start(); !done(); {
		if time.Now().After(deadline(t)) {
			t.Fatal(stalled())
		}
		c.Wait()
	}
}

func (tr *traffic) counts() (ok, failed int, errs []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok, tr.failed, append([]string(nil), tr.errs...)
}

// cpuHog runs a CPU-bound neighbour process until the test ends.
func cpuHog(t *testing.T) {
	t.Helper()
	hog := exec.Command("/bin/sh", "-c", "while :; do :; done")
	if err := hog.Start(); err != nil {
		t.Fatalf("starting a CPU-bound neighbour: %v", err)
	}
	t.Cleanup(func() {
		hog.Process.Kill()
		hog.Wait()
	})
}

// TestPooledAndPollingClients: Go's net/http client POSTing through one
// shared pool (connections come back to it after irregular pauses), and
// clients that each poll at a fixed period spread over 0.5–3 s, see no
// failure across 20 rolls on a loaded host. A drain that closes a
// connection it thinks idle races the client reusing it: the pollers whose
// period is near the idle grace hit that race on every roll.
func TestPooledAndPollingClients(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "3")
	for range 3 {
		sup.next("worker ready")
	}
	cpuHog(t)
	url := "http://" + sup.addr + "/"
	ctx, cancel := context.WithCancel(context.Background())
	tr := newTraffic()
	var clients sync.WaitGroup
	defer func() {
		cancel()
		clients.Wait()
	}()

	// Pooled: 32 goroutines share one transport, pausing 0–1.2 s between
	// POSTs, so that connections sit idle in the pool for every length.
	pool := tr.transport(32)
	defer pool.CloseIdleConnections()
	pooled := &http.Client{Transport: pool, Timeout: 20 * time.Second}
	for i := range 32 {
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		clients.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				body := fmt.Sprintf("client %d request %d", i, n)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
				tr.do(pooled, req, fmt.Sprintf("pooled %d", i))
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(rng.Int64N(int64(1200 * time.Millisecond)))):
				}
			}
		})
	}

	// Polling: one client per period, 0.5 s to 3 s in 2 ms steps, each
	// with its own keep-alive connection.
	for period := 500 * time.Millisecond; period <= 3*time.Second; period += 2 * time.Millisecond {
		clients.Go(func() {
			tp := tr.transport(1)
			defer tp.CloseIdleConnections()
			c := &http.Client{Transport: tp, Timeout: 20 * time.Second}
			select { // spread the first polls over one period
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(rand.Int64N(int64(period)))):
			}
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				tr.do(c, req, fmt.Sprintf("poller %v", period))
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	tr.waitMore(t, 500)
	dials, closed := tr.dials.Load(), tr.closed.Load()

	for gen := uint64(2); gen <= 21; gen++ {
		sup.signal(syscall.SIGHUP)
		sup.until("roll complete", func(l logLine) bool { return l.Generation == gen })
		tr.waitMore(t, 300)
	}
	cancel()
	clients.Wait()
	pool.CloseIdleConnections()
	ok, failed, errs := tr.counts()
	redials, closes := tr.dials.Load()-dials, tr.closed.Load()-closed
	t.Logf("%d requests across 20 rolls, %d failed; %d connections closed by the server, %d dialled", ok+failed, failed, closes, redials)
	if failed > 0 || ok == 0 {
		t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
	// Hand-over: a roll moves every idle connection to the new generation,
	// so no client sees its connection closed.
	if closes > 0 {
		t.Errorf("%d connections closed by the server during the rolls, want 0 (hand-over)", closes)
	}
	sup.signal(syscall.SIGTERM)
	if err := sup.wait(); err != nil {
		t.Errorf("supervisor exit after SIGTERM: %v", err)
	}
}
