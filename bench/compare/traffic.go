package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The traffic scenarios (issue 11): the kinds of clients a drain can hurt
// that the keep-alive load of restarts does not model.
const (
	tfPollers = "pollers" // pooled POSTers and clients polling at fixed periods
	tfH2      = "h2"      // HTTP/2 with prior knowledge (h2c), Go's client
	tfStreams = "streams" // responses that last 3 s, a line every 100 ms
)

var trafficKinds = []string{tfPollers, tfH2, tfStreams}

// Shapes of the traffic; small, so that a run is cheap on a shared host.
const (
	pooledClients = 16 // goroutines POSTing through one pooled transport
	pollClients   = 24 // clients with their own connection, periods 0.5–3 s
	pollMin       = 500 * time.Millisecond
	pollMax       = 3 * time.Second
	h2Clients     = 16 // goroutines sharing one h2c transport
	streamClients = 24
	streamLines   = 30
	streamEvery   = 100 * time.Millisecond
	// failPause is how long a back-to-back client waits after a failure.
	failPause = 50 * time.Millisecond
	// requestTimeout bounds one request (a stream included) after stop.
	requestTimeout = 15 * time.Second
)

// streamPath is what the stream clients ask for; every subject serves it
// as streamLines lines "line i of n" then "done n".
var streamPath = fmt.Sprintf("/stream?n=%d&every=%v", streamLines, streamEvery)

// tally counts one traffic run's outcomes.
type tally struct {
	mu       sync.Mutex
	ok       int    // requests answered in full (streams: complete)
	failed   int    // requests that failed (streams: cut, or no answer)
	first    string // the first failure, for the report
	complete int    // streams: every line and the final one
	cut      int    // streams: an answer that ended early
}

func (t *tally) add(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.ok++
		return
	}
	t.failed++
	if t.first == "" {
		t.first = err.Error()
	}
}

// errCut is a stream that was answered but ended before its final line.
var errCut = errors.New("stream cut")

// runTraffic drives kind against addr (a loopback host:port) until stop is
// closed; requests in flight then finish, each bounded by requestTimeout.
// ctx aborts everything (the harness's limit).
func runTraffic(ctx context.Context, kind, addr string, stop <-chan struct{}) (*tally, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("traffic: %q is not a loopback address", addr)
	}
	t := &tally{}
	var wg sync.WaitGroup
	loop := func(tr *http.Transport, period time.Duration, once func(*http.Client) error) {
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				begin := time.Now()
				err := once(c)
				if err != nil && ctx.Err() != nil {
					return // aborted, not failed
				}
				if errors.Is(err, errCut) {
					t.mu.Lock()
					t.cut++
					t.mu.Unlock()
				}
				t.add(err)
				wait := period - time.Since(begin)
				if err != nil && period == 0 {
					wait = failPause // no busy loop on a server that refuses
				}
				if wait > 0 {
					tm := time.NewTimer(wait)
					select {
					case <-tm.C:
					case <-stop:
					case <-ctx.Done():
					}
					tm.Stop()
				}
			}
		})
	}
	url := "http://" + addr
	switch kind {
	case tfPollers:
		pooled := &http.Transport{MaxIdleConnsPerHost: pooledClients}
		for range pooledClients {
			loop(pooled, 0, func(c *http.Client) error { return post(ctx, c, url+"/", 1) })
		}
		for i := range pollClients {
			period := pollMin + time.Duration(i)*(pollMax-pollMin)/(pollClients-1)
			loop(&http.Transport{}, period, func(c *http.Client) error { return post(ctx, c, url+"/", 1) })
		}
		defer pooled.CloseIdleConnections()
	case tfH2:
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		for range h2Clients {
			loop(tr, 0, func(c *http.Client) error { return post(ctx, c, url+"/", 2) })
		}
		defer tr.CloseIdleConnections()
	case tfStreams:
		for range streamClients {
			loop(&http.Transport{}, 0, func(c *http.Client) error { return readStream(ctx, c, url+streamPath) })
		}
	default:
		return nil, fmt.Errorf("traffic: unknown kind %q", kind)
	}
	wg.Wait()
	t.complete = t.ok
	if kind != tfStreams {
		t.complete, t.cut = 0, 0
	}
	return t, ctx.Err()
}

// post POSTs a small body and reads the whole answer, which must be a 200
// over HTTP/major. POST, because Go's client retries an idempotent request
// that failed on a reused connection, which would hide the failure.
func post(ctx context.Context, c *http.Client, url string, major int) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, strings.NewReader("ping=1&from=traffic"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("reading the body: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d: %q", resp.StatusCode, bytes.TrimSpace(body))
	case resp.ProtoMajor != major:
		return fmt.Errorf("answered over %s, want HTTP/%d", resp.Proto, major)
	}
	return nil
}

// readStream GETs a stream and checks it line by line: streamLines lines
// "line i of n", then "done n". An answer that ends otherwise is errCut.
func readStream(ctx context.Context, c *http.Client, url string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == fmt.Sprintf("line %d of %d", n+1, streamLines):
			n++
		case line == fmt.Sprintf("done %d", streamLines) && n == streamLines:
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return fmt.Errorf("%w after the final line: %v", errCut, err)
			}
			return nil
		default:
			return fmt.Errorf("%w after %d lines: %q", errCut, n, line)
		}
	}
	return fmt.Errorf("%w after %d of %d lines: %v", errCut, n, streamLines, sc.Err())
}

// streamBody is the whole answer of a stream, for a server (nginx) that
// sends a file slowly instead of writing lines on a timer.
func streamBody() string {
	var b strings.Builder
	for i := range streamLines {
		fmt.Fprintf(&b, "line %d of %d\n", i+1, streamLines)
	}
	fmt.Fprintf(&b, "done %d\n", streamLines)
	return b.String()
}
