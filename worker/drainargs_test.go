package worker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
)

// TestServeAndDrainRejectsBadInput: each bad argument gets an error naming
// it, and the listener is left open.
func TestServeAndDrainRejectsBadInput(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ok := []net.Listener{l}
	for _, tc := range []struct {
		name string
		srv  *http.Server
		ls   []net.Listener
		opts []worker.DrainOption
		want string
	}{
		{"nil server", nil, ok, nil, "server is nil"},
		{"no listeners", &http.Server{}, nil, nil, "no listeners"},
		{"nil listener", &http.Server{}, []net.Listener{l, nil}, nil, "listener 1 is nil"},
		{"negative grace", &http.Server{}, ok, []worker.DrainOption{worker.WithIdleGrace(-time.Second)}, "idle grace -1s"},
		{"negative timeout", &http.Server{}, ok, []worker.DrainOption{worker.WithDrainTimeout(-1)}, "drain timeout -1ns"},
		{"negative body limit", &http.Server{}, ok, []worker.DrainOption{worker.WithBodyLimit(-5)}, "body limit -5"},
		{"certificate without key", &http.Server{}, ok, []worker.DrainOption{worker.WithTLSFiles("cert.pem", "")}, `both a certificate and a key file, got "cert.pem" and ""`},
		{"missing certificate file", &http.Server{}, ok, []worker.DrainOption{worker.WithTLSFiles("/nonexistent/cert.pem", "/nonexistent/key.pem")}, "/nonexistent/cert.pem"},
		{"TLSConfig without certificate", &http.Server{TLSConfig: &tls.Config{}}, ok, nil, "TLSConfig has no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := worker.ServeAndDrain(context.Background(), tc.srv, tc.ls, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ServeAndDrain: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	// Still open: it accepts.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatalf("listener after the bad calls: %v", err)
	}
	sc.Close()
}

// TestServeAndDrainServeError: Serve failing on one listener is returned,
// and drains the others instead of leaving ServeAndDrain serving them.
func TestServeAndDrainServeError(t *testing.T) {
	ctx := testContext(t)
	good, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	bad, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad.Close() // Serve fails on it at once
	w := watchClose(good)
	done := make(chan error, 1)
	go func() {
		done <- worker.ServeAndDrain(context.Background(), &http.Server{Handler: rollHandler(1)}, []net.Listener{w, bad})
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("ServeAndDrain kept serving after Serve failed")
	}
	if !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), bad.Addr().String()) {
		t.Errorf("ServeAndDrain: %v, want the error of the closed listener %s", err, bad.Addr())
	}
	select {
	case <-w.closed:
	default:
		t.Error("the working listener was not closed")
	}
}
