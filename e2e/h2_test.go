//go:build linux

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files,
// and returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "handoff test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// h2Conn is a client's cleartext HTTP/2 connection that counts the GOAWAY
// frames the server sends on it, and remembers the worker that served it.
type h2Conn struct {
	net.Conn
	hdr    [9]byte
	nh     int
	skip   int
	goaway atomic.Int32
	pid    atomic.Int64
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for b := p[:n]; len(b) > 0; {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.nh:], b)
		c.nh += k
		b = b[k:]
		if c.nh == len(c.hdr) {
			if c.hdr[3] == 0x7 { // GOAWAY
				c.goaway.Add(1)
			}
			c.skip = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
			c.nh = 0
		}
	}
	return n, err
}

// h2Load runs clients GETting through one HTTP/2 transport until stopped,
// and keeps the connections it dialed.
type h2Load struct {
	tr      *traffic
	mu      sync.Mutex
	conns   []*h2Conn // cleartext ones
	dials   atomic.Int64
	proto   sync.Map // protocol seen → true
	cancel  context.CancelFunc
	clients sync.WaitGroup
}

func startH2Load(t *testing.T, url string, tr *http.Transport, clients int) *h2Load {
	l := &h2Load{tr: newTraffic()}
	if tr.DialTLSContext == nil && tr.TLSClientConfig == nil {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			l.dials.Add(1)
			hc := &h2Conn{Conn: c}
			l.mu.Lock()
			l.conns = append(l.conns, hc)
			l.mu.Unlock()
			return hc, nil
		}
	} else {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			l.dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for range clients {
		l.clients.Go(func() {
			for ctx.Err() == nil {
				var conn net.Conn
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err == nil {
					l.proto.Store(resp.Proto, true)
					if hc, ok := conn.(*h2Conn); ok {
						pid, _ := strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
						hc.pid.Store(int64(pid))
					}
					resp.Body.Close()
				}
				// Recorded by a second request on the same client, which
				// also reads the body: keep it simple and record this one.
				l.tr.record(err, resp, ctx, "h2")
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *h2Load) stop() {
	l.cancel()
	l.clients.Wait()
}

// rollH2 rolls sup n times under load and returns the pids it retired and
// the HTTP/2 connections their drains sent GOAWAY to.
func rollH2(t *testing.T, sup *supervised, n int, tr *traffic) (retired map[int]bool, goaway int) {
	t.Helper()
	retired = map[int]bool{}
	exited := map[int]bool{}
	see := func(l logLine) {
		switch l.Msg {
		case "retiring worker":
			retired[l.Pid] = true
		case "worker: drain started":
			goaway += l.GoAway
		case "worker exited":
			exited[l.Pid] = true
		}
	}
	for gen := uint64(2); gen <= uint64(n)+1; gen++ {
		sup.signal(syscall.SIGHUP)
		for _, l := range sup.until("roll complete", func(l logLine) bool { return l.Generation == gen }) {
			see(l)
		}
		tr.waitMore(t, 200)
	}
	// Every retired worker's drain has been logged once it exited.
	for {
		waiting := 0
		for pid := range retired {
			if !exited[pid] {
				waiting++
			}
		}
		if waiting == 0 {
			return retired, goaway
		}
		for _, l := range sup.untilAny(func(l logLine) bool { return l.Msg == "worker exited" }) {
			see(l)
		}
	}
}

// h2loads runs h2load in 2-second bursts against a URL (cleartext HTTP/2
// with prior knowledge for http://, h2 by ALPN for https://) until stopped,
// and sums their summaries.
type h2loads struct {
	url  string
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	succeeded, failed, errored int
	errs                       []string
}

func startH2loads(url string) *h2loads {
	h := &h2loads{url: url, done: make(chan struct{})}
	h.wg.Go(h.run)
	return h
}

func (h *h2loads) run() {
	for {
		select {
		case <-h.done:
			return
		default:
		}
		out, err := exec.Command("h2load", "-D", "2", "-c", "4", "-m", "4", "--warm-up-time", "0", h.url).CombinedOutput()
		m := h2loadSummary.FindStringSubmatch(string(out))
		if m == nil {
			h.errs = append(h.errs, fmt.Sprintf("h2load: %v: %s", err, out))
			return
		}
		s, _ := strconv.Atoi(m[1])
		f, _ := strconv.Atoi(m[2])
		e, _ := strconv.Atoi(m[3])
		h.succeeded, h.failed, h.errored = h.succeeded+s, h.failed+f, h.errored+e
		if f+e > 0 {
			h.errs = append(h.errs, string(out))
		}
	}
}

// stop stops the bursts and waits for the one running to end.
func (h *h2loads) stop() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
}

// check stops h2load and fails t unless every request succeeded: the
// drain's two-step GOAWAY (a shutdown notice, a PING round trip, then the
// final GOAWAY) leaves no stream the client sent unprocessed.
func (h *h2loads) check(t *testing.T) {
	t.Helper()
	h.stop()
	t.Logf("h2load %s: %d succeeded, %d failed, %d errored", h.url, h.succeeded, h.failed, h.errored)
	if h.succeeded == 0 || h.failed > 0 || h.errored > 0 || len(h.errs) > 0 {
		t.Errorf("h2load %s: %d succeeded, %d failed, %d errored: %q", h.url, h.succeeded, h.failed, h.errored, h.errs)
	}
}

// TestHTTP2AcrossRolls: Go's HTTP/2 client over TLS (h2 by ALPN) and over
// cleartext (h2c) fail no request across 10 rolls, and every HTTP/2
// connection of a retired worker gets a GOAWAY; h2load (nghttp2), over
// both, fails no request either.
func TestHTTP2AcrossRolls(t *testing.T) {
	t.Run("tls", func(t *testing.T) {
		cert, key, pool := selfSigned(t)
		sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "2", "-tls-cert", cert, "-tls-key", key)
		for range 2 {
			sup.next("worker ready")
		}
		l := startH2Load(t, "https://"+sup.addr+"/", &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
		}, 16)
		h2 := startH2loads("https://" + sup.addr + "/")
		defer h2.stop()
		l.tr.waitMore(t, 200)
		retired, goaway := rollH2(t, sup, 10, l.tr)
		l.stop()
		h2.check(t)
		ok, failed, errs := l.tr.counts()
		protos := []string{}
		l.proto.Range(func(k, _ any) bool { protos = append(protos, k.(string)); return true })
		t.Logf("%d requests (%v) on %d connections across 10 rolls, %d failed; %d retired workers sent GOAWAY to %d connections",
			ok+failed, protos, l.dials.Load(), failed, len(retired), goaway)
		if failed > 0 || ok == 0 {
			t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
		}
		if len(protos) != 1 || protos[0] != "HTTP/2.0" {
			t.Errorf("responses came as %v, want HTTP/2.0 only", protos)
		}
		// Every connection but those to the last generation was retired
		// with a GOAWAY.
		if goaway == 0 || int64(goaway) > l.dials.Load() {
			t.Errorf("%d GOAWAYs for %d connections", goaway, l.dials.Load())
		}
		stopSupervisor(t, sup)
	})

	t.Run("h2c", func(t *testing.T) {
		sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "2", "-h2c")
		for range 2 {
			sup.next("worker ready")
		}
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		l := startH2Load(t, "http://"+sup.addr+"/", &http.Transport{Protocols: p, MaxIdleConnsPerHost: 4}, 16)
		h2 := startH2loads("http://" + sup.addr + "/")
		defer h2.stop()
		l.tr.waitMore(t, 200)
		retired, goaway := rollH2(t, sup, 10, l.tr)
		l.stop()
		ok, failed, errs := l.tr.counts()
		if failed > 0 || ok == 0 {
			t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
		}
		l.mu.Lock()
		var toRetired, withGoaway int
		for _, c := range l.conns {
			if retired[int(c.pid.Load())] {
				toRetired++
				if c.goaway.Load() > 0 {
					withGoaway++
				}
			}
		}
		l.mu.Unlock()
		t.Logf("Go client: %d requests across 10 rolls, %d failed; %d of %d connections to retired workers saw GOAWAY; drains counted %d",
			ok+failed, failed, withGoaway, toRetired, goaway)
		if toRetired == 0 || withGoaway != toRetired {
			t.Errorf("%d of %d connections to retired workers saw a GOAWAY", withGoaway, toRetired)
		}
		h2.check(t)
		stopSupervisor(t, sup)
	})
}

var h2loadSummary = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
