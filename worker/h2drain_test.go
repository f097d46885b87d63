package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
)

// The tests in this file speak HTTP/2 to ServeAndDrain's server with a
// client written over net.Conn, frame by frame, so they see exactly which
// frames the drain sends and in which order.

// h2Frame is one HTTP/2 frame.
type h2Frame struct {
	typ, flags uint8
	stream     uint32
	payload    []byte
}

const (
	h2Data         = 0x0
	h2Headers      = 0x1
	h2Settings     = 0x4
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2FlagAck      = 0x1
	h2EndStream    = 0x1
	h2EndHeaders   = 0x4
	h2MaxStreamID  = 1<<31 - 1
	h2Status200    = 0x88 // ":status: 200", HPACK static table entry 8
	h2ClientPrefix = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// h2Client is a raw HTTP/2 client connection.
type h2Client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialH2 connects, over TLS with h2 by ALPN if tlsConf is not nil, and
// exchanges the prefaces and SETTINGS.
func dialH2(ctx context.Context, t *testing.T, addr string, tlsConf *tls.Config) *h2Client {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			t.Fatal(err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			c.Close()
			t.Fatalf("ALPN chose %q, want h2", p)
		}
		c = tc
	}
	t.Cleanup(func() { c.Close() })
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	h := &h2Client{t: t, c: c, br: bufio.NewReader(c)}
	h.write([]byte(h2ClientPrefix))
	h.writeFrame(h2Settings, 0, 0, nil)
	f := h.read()
	if f.typ != h2Settings || f.flags&h2FlagAck != 0 {
		t.Fatalf("first frame from the server: type %d flags %#x, want SETTINGS", f.typ, f.flags)
	}
	h.writeFrame(h2Settings, h2FlagAck, 0, nil)
	return h
}

func (h *h2Client) write(b []byte) {
	h.t.Helper()
	if _, err := h.c.Write(b); err != nil {
		h.t.Fatal(err)
	}
}

func (h *h2Client) writeFrame(typ, flags uint8, stream uint32, payload []byte) {
	h.t.Helper()
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	b = binary.BigEndian.AppendUint32(b, stream)
	h.write(append(b, payload...))
}

// get opens stream id with a GET for path.
func (h *h2Client) get(id uint32, path string) {
	h.t.Helper()
	scheme := byte(0x86) // :scheme: http
	if _, ok := h.c.(*tls.Conn); ok {
		scheme = 0x87 // :scheme: https
	}
	// :method: GET; :scheme; :path and :authority as literals with an
	// indexed name, not indexed.
	block := []byte{0x82, scheme, 0x04, byte(len(path))}
	block = append(block, path...)
	block = append(block, 0x01, 9)
	block = append(block, "localhost"...)
	h.writeFrame(h2Headers, h2EndHeaders|h2EndStream, id, block)
}

// read returns the next frame, ignoring WINDOW_UPDATE and SETTINGS ACK.
func (h *h2Client) read() h2Frame {
	h.t.Helper()
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(h.br, hdr[:]); err != nil {
			h.t.Fatalf("reading a frame header: %v", err)
		}
		f := h2Frame{
			typ:    hdr[3],
			flags:  hdr[4],
			stream: binary.BigEndian.Uint32(hdr[5:]) & h2MaxStreamID,
		}
		f.payload = make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(h.br, f.payload); err != nil {
			h.t.Fatalf("reading a frame payload: %v", err)
		}
		if f.typ == 0x8 || f.typ == h2Settings && f.flags&h2FlagAck != 0 {
			continue
		}
		return f
	}
}

// goAway returns a GOAWAY's last stream id and error code.
func (f h2Frame) goAway() (last, code uint32) {
	return binary.BigEndian.Uint32(f.payload) & h2MaxStreamID, binary.BigEndian.Uint32(f.payload[4:])
}

func (f h2Frame) String() string {
	switch f.typ {
	case h2GoAway:
		last, code := f.goAway()
		return fmt.Sprintf("GOAWAY(last %d, code %d)", last, code)
	case h2Ping:
		return fmt.Sprintf("PING(flags %#x, %x)", f.flags, f.payload)
	}
	return fmt.Sprintf("frame(type %d, flags %#x, stream %d, %d bytes)", f.typ, f.flags, f.stream, len(f.payload))
}

// selfSignedConfig returns a server configuration with a fresh certificate
// for 127.0.0.1, and a client configuration that trusts it.
func selfSignedConfig(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
}

// TestDrainHTTP2TwoStepGoAway: at the drain start an HTTP/2 connection gets,
// in order, a PING and nothing else until its ACK, then a GOAWAY naming the
// largest stream id (the shutdown notice) and a PING, and once that PING is
// acknowledged, the final GOAWAY naming the last stream the server read. A stream the client sent before it saw the
// notice (here: after, but before acknowledging the PING) is served, and
// so is a stream in flight at the drain start.
func TestDrainHTTP2TwoStepGoAway(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			release := make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ProtoMajor != 2 || tc.tls != (r.TLS != nil) {
					w.WriteHeader(http.StatusInternalServerError) // not served as it should be
					return
				}
				if r.URL.Path == "/block" {
					<-release
				}
			})}
			var clientConf *tls.Config
			if tc.tls {
				srv.TLSConfig, clientConf = selfSignedConfig(t)
			} else {
				srv.Protocols = new(http.Protocols)
				srv.Protocols.SetHTTP1(true)
				srv.Protocols.SetUnencryptedHTTP2(true)
			}
			var log logBuffer
			ds := startDrainServer(ctx, t, srv, worker.WithDrainLogger(log.logger()))
			h := dialH2(ctx, t, ds.addr, clientConf)
			h.get(1, "/")
			if f := h.read(); f.typ != h2Headers || f.stream != 1 || f.payload[0] != h2Status200 {
				t.Fatalf("stream 1: got %v, want a 200", f)
			}
			h.get(3, "/block") // in flight across the drain start

			ds.drain(ctx, t)
			// A PING alone, then nothing until its ACK: the client has
			// read all the server wrote before the notice comes.
			flush := h.read()
			if flush.typ != h2Ping || flush.flags&h2FlagAck != 0 || len(flush.payload) != 8 {
				t.Fatalf("first frame after the drain start: %v, want a PING", flush)
			}
			h.writeFrame(h2Ping, h2FlagAck, 0, flush.payload)
			notice := h.read()
			if last, code := notice.goAway(); notice.typ != h2GoAway || last != h2MaxStreamID || code != 0 {
				t.Fatalf("after the first PING's ACK: %v, want GOAWAY(last %d, code 0)", notice, h2MaxStreamID)
			}
			ping := h.read()
			if ping.typ != h2Ping || ping.flags&h2FlagAck != 0 || len(ping.payload) != 8 {
				t.Fatalf("after the notice: %v, want a PING", ping)
			}
			// A stream that was on its way when the notice was sent.
			h.get(5, "/")
			h.writeFrame(h2Ping, h2FlagAck, 0, ping.payload)
			var final h2Frame
			var got5 bool
			for final.typ != h2GoAway {
				f := h.read()
				switch {
				case f.typ == h2GoAway:
					final = f
				case f.typ == h2Headers && f.stream == 5:
					got5 = f.payload[0] == h2Status200
				default:
					t.Fatalf("before the final GOAWAY: %v", f)
				}
			}
			if last, code := final.goAway(); last != 5 || code != 0 {
				t.Fatalf("final %v, want GOAWAY(last 5, code 0)", final)
			}
			close(release)
			var got3 bool
			for !got3 || !got5 {
				f := h.read()
				switch {
				case f.typ == h2Headers && f.stream == 5 && !got5:
					got5 = f.payload[0] == h2Status200
					if !got5 {
						t.Fatalf("stream 5: %v, want a 200", f)
					}
				case f.typ == h2Headers && f.stream == 3:
					got3 = f.payload[0] == h2Status200
					if !got3 {
						t.Fatalf("stream 3: %v, want a 200", f)
					}
				case f.typ == h2Data:
				default:
					t.Fatalf("after the final GOAWAY: %v", f)
				}
			}
			if err := ds.wait(ctx, t); err != nil {
				t.Fatal(err)
			}
			if !log.contains(`"http2_goaway":1`) {
				t.Errorf("the drain start did not count 1 HTTP/2 connection getting GOAWAY: %s", log.String())
			}
		})
	}
}

// logBuffer collects what a drain logs, as JSON lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) contains(s string) bool { return strings.Contains(b.String(), s) }

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(b, nil)) }

// TestDrainHTTP2NoPingAck: a client that never acknowledges the drain's
// PING gets no notice, but still its final GOAWAY (after at most a
// second); the server's frames held back behind the PING are let go, and
// its stream in flight is served.
func TestDrainHTTP2NoPingAck(t *testing.T) {
	ctx := testContext(t)
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-release
		}
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ds := startDrainServer(ctx, t, srv, worker.WithDrainLogger(nil))
	h := dialH2(ctx, t, ds.addr, nil)
	h.get(1, "/block")
	ds.drain(ctx, t)
	if f := h.read(); f.typ != h2Ping || f.flags&h2FlagAck != 0 {
		t.Fatalf("first frame after the drain start: %v, want a PING", f)
	}
	close(release) // its response is held back behind the PING
	var final h2Frame
	var got1 bool
	for final.typ != h2GoAway || !got1 {
		switch f := h.read(); {
		case f.typ == h2GoAway:
			final = f
		case f.typ == h2Headers && f.stream == 1:
			if got1 = f.payload[0] == h2Status200; !got1 {
				t.Fatalf("stream 1: %v, want a 200", f)
			}
		case f.typ == h2Data:
		default:
			t.Fatalf("after an unacknowledged PING: %v (GOAWAY before: %v)", f, final)
		}
	}
	if last, code := final.goAway(); last != 1 || code != 0 {
		t.Fatalf("final %v, want GOAWAY(last 1, code 0)", final)
	}
	if err := ds.wait(ctx, t); err != nil {
		t.Fatal(err)
	}
}

// TestDrainHTTP2ConnState: the caller's ConnState hook sees an HTTP/2
// connection as net/http would show it: StateNew first, StateClosed once
// and last, never StateHijacked (h2c connections are hijacked only to be
// served as HTTP/2), and always the connection accepted, never a wrapper.
func TestDrainHTTP2ConnState(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			var mu sync.Mutex
			states := make(map[net.Conn][]http.ConnState)
			srv := &http.Server{
				Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
				ConnState: func(c net.Conn, st http.ConnState) {
					mu.Lock()
					defer mu.Unlock()
					states[c] = append(states[c], st)
				},
			}
			var clientConf *tls.Config
			if tc.tls {
				srv.TLSConfig, clientConf = selfSignedConfig(t)
			} else {
				srv.Protocols = new(http.Protocols)
				srv.Protocols.SetUnencryptedHTTP2(true)
			}
			ds := startDrainServer(ctx, t, srv, worker.WithDrainLogger(nil))
			h := dialH2(ctx, t, ds.addr, clientConf)
			h.get(1, "/")
			if f := h.read(); f.typ != h2Headers || f.stream != 1 || f.payload[0] != h2Status200 {
				t.Fatalf("stream 1: got %v, want a 200", f)
			}
			h.c.Close()
			ds.drain(ctx, t)
			if err := ds.wait(ctx, t); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(states) != 1 {
				t.Fatalf("the hook saw %d connections, want 1: %v", len(states), states)
			}
			for c, sts := range states {
				_, isTLS := c.(*tls.Conn)
				_, isTCP := c.(*net.TCPConn)
				if tc.tls && !isTLS || !tc.tls && !isTCP {
					t.Errorf("the hook saw a %T", c)
				}
				closed := 0
				for _, st := range sts {
					switch st {
					case http.StateHijacked:
						t.Errorf("the hook saw StateHijacked: %v", sts)
					case http.StateClosed:
						closed++
					}
				}
				if sts[0] != http.StateNew || sts[len(sts)-1] != http.StateClosed || closed != 1 {
					t.Errorf("states %v, want StateNew first and StateClosed once, last", sts)
				}
			}
		})
	}
}

// TestDrainHTTP2Late: an h2c connection accepted before the drain start
// but whose client preface comes after it still gets the drain's steps
// (PING, then the notice and a PING, then the final GOAWAY), and its
// stream sent before the notice is served.
func TestDrainHTTP2Late(t *testing.T) {
	ctx := testContext(t)
	accepted := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepted <- struct{}{}
			}
		},
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ds := startDrainServer(ctx, t, srv, worker.WithDrainLogger(nil))
	raw := dialRaw(ctx, t, ds.addr)
	select {
	case <-accepted:
	case <-ctx.Done():
		t.Fatal("the connection was not accepted")
	}
	ds.drain(ctx, t)
	h := &h2Client{t: t, c: raw.Conn, br: raw.br}
	h.write([]byte(h2ClientPrefix))
	h.writeFrame(h2Settings, 0, 0, nil)
	if f := h.read(); f.typ != h2Settings {
		t.Fatalf("first frame from the server: %v, want SETTINGS", f)
	}
	h.writeFrame(h2Settings, h2FlagAck, 0, nil)
	h.get(1, "/")
	var final h2Frame
	var got1, noticed bool
	for final.typ != h2GoAway || !got1 {
		switch f := h.read(); {
		case f.typ == h2Ping && f.flags&h2FlagAck == 0:
			h.writeFrame(h2Ping, h2FlagAck, 0, f.payload)
		case f.typ == h2GoAway:
			if last, _ := f.goAway(); last == h2MaxStreamID {
				noticed = true
			} else if !noticed {
				t.Fatalf("%v before the notice", f)
			} else {
				final = f
			}
		case f.typ == h2Headers && f.stream == 1:
			if got1 = f.payload[0] == h2Status200; !got1 {
				t.Fatalf("stream 1: %v, want a 200", f)
			}
		case f.typ == h2Data:
		default:
			t.Fatalf("unexpected %v", f)
		}
	}
	if last, code := final.goAway(); last != 1 || code != 0 {
		t.Fatalf("final %v, want GOAWAY(last 1, code 0)", final)
	}
	if err := ds.wait(ctx, t); err != nil {
		t.Fatal(err)
	}
}
