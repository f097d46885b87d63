package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Limits on what the raw client accepts from a server.
const (
	maxHeaderLines = 100
	maxBodyLength  = 1 << 30
	readBufferSize = 4096
)

// longAgo is a deadline in the past: setting it interrupts blocked I/O.
var longAgo = time.Unix(1, 0)

// outcome is one request's result, before timing.
type outcome struct {
	kind   Kind
	reused bool // sent on a connection that had already served a response
	err    error
}

// doer performs requests for one client, on one connection at a time.
type doer interface {
	do(ctx context.Context, m Method) outcome
	dials() int
	close()
}

// rawClient is the hand-written HTTP/1.1 client. Only its client's
// goroutine calls do and close; abort may run on any goroutine.
type rawClient struct {
	addr      string
	timeout   time.Duration
	requests  [2][]byte // indexed by GET, POST
	br        *bufio.Reader
	served    int // complete responses on the current connection
	ndials    int
	dialf     DialFunc // nil: net.Dialer
	stopAbort func() bool

	mu      sync.Mutex // guards conn and aborted against abort
	conn    net.Conn
	aborted bool
}

func newRawClient(ctx context.Context, addr string, o *options) *rawClient {
	c := &rawClient{
		addr:    addr,
		timeout: o.timeout,
		br:      bufio.NewReaderSize(nil, readBufferSize),
		dialf:   o.dial,
	}
	c.requests[GET] = []byte("GET " + o.path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUser-Agent: handoff-bench\r\n\r\n")
	c.requests[POST] = append([]byte("POST "+o.path+" HTTP/1.1\r\nHost: "+addr+
		"\r\nUser-Agent: handoff-bench\r\nContent-Type: application/octet-stream\r\nContent-Length: "+
		strconv.Itoa(len(o.body))+"\r\n\r\n"), o.body...)
	c.stopAbort = context.AfterFunc(ctx, c.abort)
	return c
}

// abort interrupts the request in flight; the context is done.
func (c *rawClient) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborted = true
	if c.conn != nil {
		c.conn.SetDeadline(longAgo)
	}
}

func (c *rawClient) dials() int { return c.ndials }

func (c *rawClient) close() {
	c.stopAbort()
	c.closeConn()
}

func (c *rawClient) closeConn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	c.served = 0
}

func (c *rawClient) dial(ctx context.Context, deadline time.Time) error {
	c.ndials++
	var conn net.Conn
	var err error
	if c.dialf != nil {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		conn, err = c.dialf(dctx, c.addr)
		cancel()
	} else {
		d := net.Dialer{Deadline: deadline, KeepAlive: -1}
		conn, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		conn.Close()
		return context.Canceled
	}
	c.conn = conn
	c.br.Reset(conn)
	return nil
}

// do sends one request and reads its response. It never retries: a failed
// request closes the connection, and the next one dials again.
func (c *rawClient) do(ctx context.Context, m Method) outcome {
	deadline := time.Now().Add(c.timeout)
	if c.conn == nil {
		if err := c.dial(ctx, deadline); err != nil {
			return outcome{kind: classify(err, false), err: err}
		}
	}
	out := outcome{reused: c.served > 0}
	fail := func(err error, gotByte bool) outcome {
		c.closeConn()
		out.kind, out.err = classify(err, gotByte), err
		return out
	}
	if n := c.br.Buffered(); n > 0 {
		return fail(fmt.Errorf("%w: %d stray bytes after the previous response", errProtocol, n), true)
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return fail(err, false)
	}
	if _, err := c.conn.Write(c.requests[m]); err != nil {
		return fail(err, false)
	}
	status, keep, gotByte, err := c.readResponse()
	if err != nil {
		return fail(err, gotByte)
	}
	c.served++
	if !keep {
		c.closeConn()
	}
	if status != 200 {
		out.kind, out.err = Non200, fmt.Errorf("status %d", status)
	}
	return out
}

// header is what the raw client needs from a response's header.
type header struct {
	length    int64 // -1 without Content-Length
	chunked   bool
	close     bool
	keepAlive bool
}

// readResponse reads one response, skipping interim 1xx responses, and
// says whether the connection may carry another request.
func (c *rawClient) readResponse() (status int, keep, gotByte bool, err error) {
	if _, err := c.br.Peek(1); err != nil {
		return 0, false, false, err
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, false, true, err
		}
		minor, code, ok := parseStatusLine(line)
		if !ok {
			return 0, false, true, fmt.Errorf("%w: status line %q", errProtocol, line)
		}
		h, err := c.readHeader()
		if err != nil {
			return code, false, true, err
		}
		if code == 101 {
			return code, false, true, fmt.Errorf("%w: unexpected 101 Switching Protocols", errProtocol)
		}
		if code < 200 {
			continue
		}
		keep = !h.close && (minor == 1 || h.keepAlive)
		switch {
		case code == 204 || code == 304:
		case h.chunked:
			err = c.readChunked()
		case h.length >= 0:
			_, err = c.br.Discard(int(h.length))
		default:
			_, err = io.Copy(io.Discard, c.br) // delimited by the close
			keep = false
		}
		return code, keep, true, err
	}
}

// readLine returns one line without its CRLF; the slice is valid until the
// next read.
func (c *rawClient) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, readBufferSize)
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseStatusLine parses "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (minor, code int, ok bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return 0, 0, false
	}
	switch line[7] {
	case '0':
		minor = 0
	case '1':
		minor = 1
	default:
		return 0, 0, false
	}
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return 0, 0, false
		}
		code = code*10 + int(b-'0')
	}
	return minor, code, code >= 100
}

func (c *rawClient) readHeader() (header, error) {
	h := header{length: -1}
	for range maxHeaderLines {
		line, err := c.readLine()
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			return h, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return h, fmt.Errorf("%w: header line %q", errProtocol, line)
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || n > maxBodyLength || h.length >= 0 && h.length != n {
				return h, fmt.Errorf("%w: Content-Length %q", errProtocol, value)
			}
			h.length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				h.chunked = bytes.EqualFold(bytes.TrimSpace(tok), []byte("chunked"))
			}
		case bytes.EqualFold(name, []byte("Connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				h.close = h.close || bytes.EqualFold(tok, []byte("close"))
				h.keepAlive = h.keepAlive || bytes.EqualFold(tok, []byte("keep-alive"))
			}
		}
	}
	return h, fmt.Errorf("%w: more than %d header lines", errProtocol, maxHeaderLines)
}

// readChunked discards a chunked body and its trailer.
func (c *rawClient) readChunked() error {
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil || size > maxBodyLength {
			return fmt.Errorf("%w: chunk size %q", errProtocol, line)
		}
		if size == 0 {
			for range maxHeaderLines {
				line, err := c.readLine()
				if err != nil {
					return err
				}
				if len(line) == 0 {
					return nil
				}
			}
			return fmt.Errorf("%w: more than %d trailer lines", errProtocol, maxHeaderLines)
		}
		if _, err := c.br.Discard(int(size)); err != nil {
			return err
		}
		line, err = c.readLine()
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return fmt.Errorf("%w: no CRLF after a chunk", errProtocol)
		}
	}
}
