package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// tlsProxy is a TLS tunnel in front of a plaintext subject, in the
// harness's process: each client connection it accepts is one TLS session
// and one plaintext connection to the subject, and either's end ends the
// other. A subject that closes a connection therefore makes its client
// dial and shake hands again, exactly as if the subject terminated TLS
// itself (or stood behind a 1:1 TLS terminator: stunnel, an L4 TLS
// listener); a connection the subject keeps (handed to the next
// generation) keeps its TLS session. The proxy adds no pooling, no retry
// and no buffering beyond the bytes in flight.
//
// Handshakes are full ones (no session tickets, no client session cache):
// TLS 1.3 with Go's defaults, an ECDSA P-256 certificate the client
// verifies. Both sides' handshakes run on a locked OS thread and are
// charged that thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so waiting
// for the peer, and the rest of a busy machine, cost nothing.
type tlsProxy struct {
	ln       net.Listener
	upstream string
	srvCfg   *tls.Config
	cliCfg   *tls.Config
	server   handshakeLog // the proxy's side: what the subject's TLS would pay
	client   handshakeLog // the clients' side
	upDials  atomic.Int64
	upFailed atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	params string  // the first handshake's version, suite and group
	ups    connLog // the connections to the subject
}

// handshakeLog records handshakes: when each ended and its CPU time.
type handshakeLog struct {
	mu     sync.Mutex
	at     []time.Time
	cpu    []time.Duration
	failed int
}

func (l *handshakeLog) add(at time.Time, cpu time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		return
	}
	l.at = append(l.at, at)
	l.cpu = append(l.cpu, cpu)
}

// since returns the handshakes completed at or after t, their CPU time,
// and the handshakes in all.
func (l *handshakeLog) since(t time.Time) (n int, cpu time.Duration, all int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, at := range l.at {
		if !at.Before(t) {
			n++
			cpu += l.cpu[i]
		}
	}
	return n, cpu, len(l.at)
}

// startTLSProxy listens on 127.0.0.1 and tunnels to upstream.
func startTLSProxy(upstream string) (*tlsProxy, error) {
	cert, pool, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &tlsProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{},
		srvCfg: &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true},
		cliCfg: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	p.wg.Go(p.accept)
	return p, nil
}

// addr is where the clients dial.
func (p *tlsProxy) addr() string { return p.ln.Addr().String() }

func (p *tlsProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track remembers c for close; false once the proxy is closed.
func (p *tlsProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tlsProxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// handshakeTimeout bounds one handshake, on either side.
const handshakeTimeout = 10 * time.Second

// serve shakes hands with one client, dials the subject, and copies both
// ways until either side ends.
func (p *tlsProxy) serve(c net.Conn) {
	defer func() { c.Close(); p.forget(c) }()
	tc := tls.Server(c, p.srvCfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	cpu, err := threadCPU(func() error { return tc.HandshakeContext(ctx) })
	cancel()
	p.server.add(time.Now(), cpu, err)
	if err != nil {
		return
	}
	p.noteParams(tc.ConnectionState())
	p.upDials.Add(1)
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		p.upFailed.Add(1)
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	from := time.Now()
	defer func() {
		up.Close()
		p.forget(up)
		p.ups.add(up, from)
	}()
	var once sync.Once
	end := func() { once.Do(func() { tc.Close(); up.Close() }) }
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(up, tc); end() })
	io.Copy(tc, up)
	end()
	wg.Wait()
}

func (p *tlsProxy) noteParams(st tls.ConnectionState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.params == "" {
		p.params = fmt.Sprintf("%s, %s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
	}
}

// negotiated describes the first handshake: version, suite, group.
func (p *tlsProxy) negotiated() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.params
}

// dial is the clients' dial (load.WithDial): TCP to the proxy, then a full
// handshake, its CPU time charged to the client side.
func (p *tlsProxy) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, p.cliCfg)
	cpu, err := threadCPU(func() error { return tc.HandshakeContext(ctx) })
	p.client.add(time.Now(), cpu, err)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// close stops accepting, closes every connection and waits for the
// proxy's goroutines. It may be called again.
func (p *tlsProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// threadCPU runs f on a locked OS thread and returns the CPU time that
// thread spent meanwhile: f's own work, not the time it waited.
func threadCPU(f func() error) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, err0 := clockThread()
	err := f()
	t1, err1 := clockThread()
	if err := errors.Join(err0, err1); err != nil {
		return 0, errors.Join(err, err0, err1)
	}
	return t1 - t0, err
}

func clockThread() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_THREAD_CPUTIME_ID): %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "handoff bench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
