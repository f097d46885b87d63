package worker

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestHandConnModel drives a handConn with a model of net/http's reading
// (a Read of the whole buffer when idle with nothing buffered, shorter
// ones with bytes buffered or during a request, a response Write that
// ends each request) while a client writes bytes and the drain kicks at
// random moments, racing each other. Invariants, checked at each step:
// a kick is only ever returned to a Read of the whole buffer, on an idle
// connection, with no byte read since the last Write; a Read not kicked
// never times out (an abandoned kick restores the deadline); and no byte
// is lost: what the server read plus what is left in the socket once it
// is kicked is exactly what the client wrote, in order. The seed is
// logged; HANDOFF_MODEL_SEED replays one.
func TestHandConnModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HANDOFF_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (replay with HANDOFF_MODEL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kicks := 0
	for run := range 200 {
		if modelRun(t, l, rng, run) {
			kicks++
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("200 runs, %d ended in a kick", kicks)
	if kicks == 0 {
		t.Error("no run was kicked: the model checks nothing")
	}
}

const modelBuf = 4096

func modelRun(t *testing.T, l net.Listener, rng *rand.Rand, run int) (kicked bool) {
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	dl := deadline(t)
	client.SetDeadline(dl)
	c := newHandConn(sc, "model", &drainHand{}).(*handConn)
	c.setState(http.StateNew)

	var wmu sync.Mutex
	written := 0 // bytes the client wrote: byte i is byte(i)
	write := func(n int) {
		wmu.Lock()
		defer wmu.Unlock()
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(written + i)
		}
		if _, err := client.Write(b); err != nil {
			t.Errorf("run %d: client write: %v", run, err)
		}
		written += n
	}
	read := 0       // bytes the server read
	sinceWrite := 0 // of them, since its last Write
	buffered := 0   // read but not yet consumed by a request
	active := false // a request is being read or served
	var helpers sync.WaitGroup
	defer helpers.Wait()

	for step := 0; step < 60; step++ {
		// The server's next Read, as net/http would ask for it.
		n := modelBuf - buffered
		switch {
		case active:
			n = 1 + rng.IntN(modelBuf-1) // reading a body, or the background byte
		case buffered >= 4:
			// a whole request is buffered: no Read, it is served
			consumed := 1 + rng.IntN(buffered)
			buffered -= consumed
			active = true
			c.setState(http.StateActive)
			continue
		}
		// The client's bytes wake the Read if the drain's kick does not:
		// written before it, or after or before the kick, racing it.
		wake, yields, size := rng.IntN(3), rng.IntN(3), 1+rng.IntN(64)
		if wake == 0 {
			write(size)
		}
		helpers.Go(func() {
			for range yields {
				runtime.Gosched() // let the Read start, or not
			}
			switch wake {
			case 0:
				c.handAtIdle()
			case 1:
				write(size)
				c.handAtIdle()
			default:
				c.handAtIdle()
				write(size)
			}
		})
		c.mu.Lock()
		first := c.firstRead == 0 || c.firstRead == n
		c.mu.Unlock()
		p := make([]byte, n)
		got, err := c.Read(p)
		helpers.Wait()
		if err != nil {
			c.mu.Lock()
			wasKicked := c.kicked
			c.mu.Unlock()
			var ne net.Error
			if !wasKicked || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("run %d step %d: Read of %d: %v (kicked %v): a Read timed out without a kick", run, step, n, err, wasKicked)
			}
			if active || sinceWrite != 0 || n != modelBuf || !first {
				t.Fatalf("run %d step %d: kicked a Read of %d with %d bytes read since the last write, active %v", run, step, n, sinceWrite, active)
			}
			kicked = true
			break
		}
		for i := range got {
			if p[i] != byte(read+i) {
				t.Fatalf("run %d step %d: byte %d is %d, want %d", run, step, read+i, p[i], byte(read+i))
			}
		}
		read += got
		sinceWrite += got
		buffered += got
		if !active && rng.IntN(2) == 0 {
			active = true
			c.setState(http.StateActive)
		}
		if active && rng.IntN(3) == 0 {
			// The response: the request ends, some bytes may stay buffered (pipelined).
			buffered = rng.IntN(buffered + 1)
			if _, err := c.Write([]byte("r")); err != nil {
				t.Fatal(err)
			}
			sinceWrite = 0
			active = false
			c.setState(http.StateIdle)
			c.mu.Lock()
			c.want = false // handed at a later idle point, if the drain kicks again
			c.mu.Unlock()
		}
	}
	// Whatever the server did not read is still in the socket, in order.
	wmu.Lock()
	total := written
	wmu.Unlock()
	sc.SetReadDeadline(dl)
	rest := make([]byte, total-read)
	if _, err := io.ReadFull(sc, rest); err != nil {
		t.Fatalf("run %d: reading the %d bytes left after %d read of %d: %v", run, len(rest), read, total, err)
	}
	for i, b := range rest {
		if b != byte(read+i) {
			t.Fatalf("run %d: byte %d left in the socket is %d, want %d", run, read+i, b, byte(read+i))
		}
	}
	return kicked
}
