package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

// exampleWorkerEnv makes the re-executed test binary run the example's
// worker instead of the tests.
const exampleWorkerEnv = "HANDOFF_EXAMPLE_WORKER"

func init() {
	if os.Getenv(exampleWorkerEnv) == "echo" {
		if err := worker.Run(context.Background(), echo); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// echo is a TCP worker's Handler: it echoes every connection until ctx is
// done. It never says "ready": Run does, the first time it accepts.
func echo(ctx context.Context, ls []listener.Inherited) error {
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return // closed below: stopping
				}
				wg.Go(func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(time.Minute))
					io.Copy(c, c)
				})
			}
		})
	}
	<-ctx.Done() // SIGTERM: stop accepting, let the connections finish
	for _, l := range ls {
		l.Close()
	}
	wg.Wait()
	return nil
}

// A TCP echo server as a worker: Run hands the Handler the inherited
// listeners and sends READY=1 when it first accepts, so the supervisor,
// which waits for READY=1 here, never kills it for readiness. The program
// itself would be just:
//
//	func main() {
//		if err := worker.Run(context.Background(), echo); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// and would run as well under the handoff CLI or systemd's socket activation.
func ExampleRun() {
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	ready := make(chan bool, 1)
	s, err := supervisor.New(
		supervisor.Command{Path: exe, Env: append(os.Environ(), exampleWorkerEnv+"=echo", "GORACE=atexit_sleep_ms=0")},
		supervisor.WithSockets(sock),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()),
		supervisor.WithReadyTimeout(10*time.Second),
		supervisor.WithLogger(zap.NewNop()),
		supervisor.WithHooks(supervisor.Hooks{OnReady: func(supervisor.WorkerInfo) { ready <- true }}))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go s.Run(ctx)
	<-ready

	c, err := net.Dial("tcp", sock.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(c, "hello, worker")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	c.Close()
	fmt.Print("echoed: ", line)
	if err := s.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// echoed: hello, worker
}
