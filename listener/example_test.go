package listener_test

import (
	"errors"
	"log"
	"net"
	"net/http"

	"github.com/handoff-dev/handoff/listener"
)

// A worker serves HTTP on the socket named "web" that its supervisor passed on, or binds its own
// when started by hand.
func ExampleInherit() {
	var ln net.Listener
	ls, err := listener.Inherit()
	switch {
	case errors.Is(err, listener.ErrNoListeners):
		if ln, err = net.Listen("tcp", ":8080"); err != nil {
			log.Fatal(err)
		}
	case err != nil:
		log.Fatal(err)
	default:
		var ok bool
		if ln, ok = listener.Lookup(ls, "web"); !ok {
			log.Fatal("no socket named web")
		}
	}
	log.Fatal(http.Serve(ln, nil))
}

// A supervisor binds its sockets from addresses given on its command line.
func ExampleListen() {
	var socks []*listener.Socket
	for _, s := range []string{"web=tcp://:8080", "admin=unix:///run/app/admin.sock"} {
		a, err := listener.ParseAddr(s)
		if err != nil {
			log.Fatal(err)
		}
		sock, err := listener.Listen(a, listener.WithBacklog(1024))
		if err != nil {
			log.Fatal(err)
		}
		socks = append(socks, sock)
	}
	for _, s := range socks {
		log.Println(s.Name(), s.Addr())
	}
}
