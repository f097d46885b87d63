package listener_test

import (
	"fmt"

	"github.com/handoff-dev/handoff/listener"
)

// Addresses come from a command line or a config file; a bad one is an
// error naming the part that is wrong.
func ExampleParseAddr() {
	for _, s := range []string{"web=tcp://127.0.0.1:8080", ":8443", "admin=unix://@handoff-admin", "tcp://localhost:http"} {
		a, err := listener.ParseAddr(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("name=%q network=%s address=%s\n", a.Name, a.Network, a.Address)
	}
	// Output:
	// name="web" network=tcp address=127.0.0.1:8080
	// name="" network=tcp address=:8443
	// name="admin" network=unix address=@handoff-admin
	// error: listener: address "tcp://localhost:http": "localhost:http": bad port "http" (want a number from 0 to 65535)
}
