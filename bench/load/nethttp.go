package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
)

// netClient is Go's net/http client restricted to one connection.
type netClient struct {
	client *http.Client
	tr     *http.Transport
	url    string
	body   []byte
	ndials atomic.Int64
	reused atomic.Bool
	trace  *httptrace.ClientTrace

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

func newNetClient(addr string, o *options) *netClient {
	c := &netClient{url: "http://" + addr + o.path, body: o.body, conns: map[net.Conn]struct{}{}}
	dialer := &net.Dialer{Timeout: o.timeout, KeepAlive: -1}
	c.tr = &http.Transport{
		Proxy:               nil, // never a proxy: the traffic stays on loopback
		DialContext:         c.dial(dialer, o.dial),
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
	}
	c.client = &http.Client{
		Transport: c.tr,
		Timeout:   o.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	c.trace = &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { c.reused.Store(info.Reused) },
	}
	return c
}

func (c *netClient) dials() int { return int(c.ndials.Load()) }

// dial counts and tracks the transport's connections.
func (c *netClient) dial(d *net.Dialer, f DialFunc) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c.ndials.Add(1)
		var conn net.Conn
		var err error
		if f != nil {
			conn, err = f(ctx, address)
		} else {
			conn, err = d.DialContext(ctx, network, address)
		}
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.conns[conn] = struct{}{}
		return &trackedConn{Conn: conn, c: c}, nil
	}
}

// trackedConn forgets itself when the transport closes it.
type trackedConn struct {
	net.Conn
	c *netClient
}

func (t *trackedConn) Close() error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	delete(t.c.conns, t.Conn)
	return t.Conn.Close()
}

// close closes the client's connections now: the transport returns a
// connection to its idle pool, where CloseIdleConnections finds it, only
// some time after the response body has been read.
func (c *netClient) close() {
	c.tr.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
		delete(c.conns, conn)
	}
}

func (c *netClient) do(ctx context.Context, m Method) outcome {
	method, body := http.MethodGet, io.Reader(nil)
	if m == POST {
		method, body = http.MethodPost, bytes.NewReader(c.body)
	}
	c.reused.Store(false)
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, c.trace), method, c.url, body)
	if err != nil {
		return outcome{kind: Other, err: err}
	}
	if m == POST {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return outcome{kind: classifyNetHTTP(err), reused: c.reused.Load(), err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	out := outcome{reused: c.reused.Load()}
	switch {
	case err != nil:
		out.kind, out.err = classify(err, true), err
	case resp.StatusCode != http.StatusOK:
		out.kind, out.err = Non200, fmt.Errorf("status %d", resp.StatusCode)
	}
	return out
}

// classifyNetHTTP classifies an error of Client.Do. net/http reads a
// response only once its first byte has arrived, so an unexpected EOF
// there is mid-response; a connection closed before any byte surfaces as
// io.EOF or, on a reused connection, as its unexported "server closed idle
// connection" error, recognised by its text.
func classifyNetHTTP(err error) Kind {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return EOFMidResponse
	}
	if k := classify(err, false); k != Other {
		return k
	}
	if strings.Contains(err.Error(), "server closed idle connection") {
		return EOFBeforeResponse
	}
	return Other
}
