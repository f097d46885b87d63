//go:build unix

package supervisor_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

func init() {
	// example-http is the worker of the examples: an HTTP server that says
	// which slot and generation it is, and GREETING if set.
	helpers["example-http"] = func() int {
		id, _ := worker.Self()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%shello from worker %d of generation %d\n", os.Getenv("GREETING"), id.Worker, id.Generation)
		})}
		if err := worker.RunHTTP(context.Background(), srv); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
}

// exampleCommand is the worker program of the examples: this test binary,
// re-executed as the example-http helper. A real program would name its
// server's binary, or use Main to run itself.
func exampleCommand() supervisor.Command {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	return supervisor.Command{Path: exe, Env: append(os.Environ(), helperEnv+"=example-http", "GORACE=atexit_sleep_ms=0")}
}

// A supervised HTTP server: two workers serve on one socket, and a request
// is answered by whichever accepts it. (In a program of your own,
// supervisor.MainHTTP does all of this in one call, with this same binary as
// the worker.)
func Example_httpServer() {
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()
	ready := make(chan supervisor.WorkerInfo, 2)
	s, err := supervisor.New(exampleCommand(),
		supervisor.WithSockets(sock),
		supervisor.WithWorkers(2),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()), // worker.RunHTTP says READY=1
		supervisor.WithLogger(zap.NewNop()),                  // quiet here; by default it logs to stderr
		supervisor.WithHooks(supervisor.Hooks{OnReady: func(w supervisor.WorkerInfo) { ready <- w }}),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go s.Run(ctx)
	<-ready
	<-ready

	resp, err := http.Get("http://" + sock.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	st := s.Stats()
	fmt.Println(resp.Status)
	fmt.Println("answered by generation 1:", strings.HasSuffix(string(body), "of generation 1\n"))
	fmt.Println("workers:", len(st.Workers), "generation:", st.Generation)

	// Graceful stop: each worker drains and exits 0. A draining worker
	// leaves an idle keep-alive connection to its client until the drain's
	// deadline (closing it would race the client's next request), so the
	// client closes its own first; kept, it would hold the stop 22.5 s.
	http.DefaultClient.CloseIdleConnections()
	if err := s.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped")
	// Output:
	// 200 OK
	// answered by generation 1: true
	// workers: 2 generation: 1
	// stopped
}

// Hooks take part in the worker life cycle: BeforeSpawn may change the
// worker's command and environment, AfterSpawn and OnReady follow it. They
// run on the supervisor's run goroutine, one at a time, so they need no
// lock, but must return promptly and not call the Supervisor's methods.
func ExampleHooks() {
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()
	ready := make(chan bool, 2)
	hooks := supervisor.Hooks{
		BeforeSpawn: func(sp *supervisor.Spawn) error {
			sp.Env = append(sp.Env, fmt.Sprintf("GREETING=generation %d says: ", sp.Generation))
			return nil
		},
		AfterSpawn: func(w supervisor.WorkerInfo) {
			fmt.Printf("worker %d of generation %d started\n", w.Slot, w.Generation)
		},
		OnReady: func(w supervisor.WorkerInfo) {
			fmt.Printf("worker %d of generation %d ready\n", w.Slot, w.Generation)
			ready <- true
		},
	}
	s, err := supervisor.New(exampleCommand(),
		supervisor.WithSockets(sock),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()),
		supervisor.WithLogger(zap.NewNop()),
		supervisor.WithHooks(hooks),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go s.Run(ctx)
	<-ready

	resp, err := http.Get("http://" + sock.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	// A roll starts generation 2 and retires generation 1 once the new
	// worker is ready; Roll returns when it is done.
	if err := s.Roll(ctx); err != nil {
		log.Fatal(err)
	}
	st := s.Stats()
	fmt.Println("serving generation", st.Generation, "with worker 0 of generation", st.Workers[0].Generation)
	// The client's keep-alive connection went to generation 2 with the
	// roll; it closes it, or the stop would wait for the drain's deadline.
	http.DefaultClient.CloseIdleConnections()
	if err := s.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// worker 0 of generation 1 started
	// worker 0 of generation 1 ready
	// generation 1 says: hello from worker 0 of generation 1
	// worker 0 of generation 2 started
	// worker 0 of generation 2 ready
	// serving generation 2 with worker 0 of generation 2
}
