//go:build linux

package metricscost

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-dev/handoff/metrics"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

const helperEnv = "HANDOFF_BENCH_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "exit":
		os.Exit(0)
	case "http":
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello\n")
		})}
		if err := worker.RunHTTP(context.Background(), srv); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// start runs a supervisor of the helper and, with metrics, a scraper
// every 100ms; stop ends both.
func start(b *testing.B, helper string, n int, withMetrics bool, opts ...supervisor.Option) (s *supervisor.Supervisor, stop func()) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	opts = append(opts, supervisor.WithWorkers(n), supervisor.WithListen("tcp://127.0.0.1:0"), supervisor.WithMinUptime(0))
	if withMetrics {
		opts = append(opts, supervisor.WithMetrics("tcp://127.0.0.1:0", metrics.Handler))
	}
	s, err = supervisor.New(supervisor.Command{Path: exe, Env: append(os.Environ(), helperEnv+"="+helper, "GORACE=atexit_sleep_ms=0")}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	<-s.Running()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	if withMetrics {
		url := "http://" + s.Stats().MetricsAddr + "/metrics"
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				if resp, err := c.Get(url); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				select {
				case <-quit:
					c.CloseIdleConnections()
					return
				case <-tick.C:
				}
			}
		}()
	}
	return s, func() {
		close(quit)
		wg.Wait()
		s.Close()
		<-done
	}
}

// BenchmarkSpawnRate: one op is one worker start; the workers exit at once.
func BenchmarkSpawnRate(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", on), func(b *testing.B) {
			spawned := make(chan struct{}, 1024)
			s, stop := start(b, "exit", 4, on, supervisor.WithHooks(supervisor.Hooks{
				AfterSpawn: func(supervisor.WorkerInfo) {
					select {
					case spawned <- struct{}{}:
					default:
					}
				},
			}))
			defer stop()
			for range 8 { // warm up
				<-spawned
			}
			first := s.Stats().Starts
			b.ResetTimer()
			t0 := time.Now()
			for range b.N {
				<-spawned
			}
			b.StopTimer()
			n := s.Stats().Starts - first
			b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "spawns/s")
		})
	}
}

// BenchmarkThroughput: one op is one GET served by one of two workers, on
// keep-alive connections from 8 clients.
func BenchmarkThroughput(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", on), func(b *testing.B) {
			s, stop := start(b, "http", 2, on, supervisor.WithReadiness(supervisor.ReadyOnNotify()))
			defer stop()
			var addr string
			for _, q := range s.Stats().Sockets {
				addr = q.Addr
			}
			for readyWorkers(s) < 2 {
				time.Sleep(10 * time.Millisecond) // set-up, outside the timed part
			}
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{}).DialContext}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			url := "http://" + addr + "/"
			b.SetParallelism(4)
			b.ResetTimer()
			t0 := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "req/s")
		})
	}
}

// BenchmarkScrape: one op is one GET /metrics of a supervisor of 4 workers.
func BenchmarkScrape(b *testing.B) {
	s, stop := start(b, "http", 4, true, supervisor.WithReadiness(supervisor.ReadyOnNotify()))
	defer stop()
	url := "http://" + s.Stats().MetricsAddr + "/metrics"
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	b.ResetTimer()
	for range b.N {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// readyWorkers counts the ready workers of s.
func readyWorkers(s *supervisor.Supervisor) int {
	n := 0
	for _, w := range s.Stats().Workers {
		if w.State == supervisor.Ready {
			n++
		}
	}
	return n
}
