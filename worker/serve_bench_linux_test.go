package worker_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"

	"github.com/handoff-dev/handoff/worker"
)

// BenchmarkServeKeepAlive is what a keep-alive HTTP/1.1 request costs
// served by ServeAndDrain against the same server served by net/http alone,
// over loopback: compare cpu-ns/op (the process's CPU time, user and
// system: ns/op is mostly the loopback round trip) and allocs/op of the
// two; the client's share is the same in both. One request per op, from 8
// connections in turn.
//
//	go test -run '^$' -bench ServeKeepAlive -benchmem ./worker/
func BenchmarkServeKeepAlive(b *testing.B) {
	for _, bc := range []struct {
		name  string
		serve func(ctx context.Context, srv *http.Server, l net.Listener) error
	}{
		{"net/http", func(ctx context.Context, srv *http.Server, l net.Listener) error {
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}},
		{"ServeAndDrain", func(ctx context.Context, srv *http.Server, l net.Listener) error {
			return worker.ServeAndDrain(ctx, srv, []net.Listener{l}, worker.WithDrainLogger(nil))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			body := []byte("hello\n")
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Worker-Pid", "1")
				w.Write(body)
			})}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- bc.serve(ctx, srv, l) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			}()
			conns := make([]*benchConn, 8)
			for i := range conns {
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				conns[i] = &benchConn{c: c, br: bufio.NewReader(c)}
			}
			req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
			b.ReportAllocs()
			cpu0 := processCPU(b)
			i := 0
			for b.Loop() {
				if err := conns[i%len(conns)].do(req); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// benchConn is a keep-alive client connection that reads responses with
// a Content-Length and discards them, allocating nothing, so that
// allocs/op is the server's (http.ReadResponse allocates a Response and
// its header per request).
type benchConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (bc *benchConn) do(req []byte) error {
	if _, err := bc.c.Write(req); err != nil {
		return err
	}
	n := -1
	for {
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		const cl = "Content-Length: "
		if len(line) > len(cl) && string(line[:len(cl)]) == cl {
			if n, err = strconv.Atoi(string(line[len(cl) : len(line)-2])); err != nil {
				return err
			}
		}
	}
	if n < 0 {
		return errors.New("a response without Content-Length")
	}
	_, err := bc.br.Discard(n)
	return err
}

// processCPU is the CPU time the process has used, user and system, in ns.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
