//go:build linux

package reap_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"syscall"

	"github.com/handoff-dev/handoff/reap"
)

// A Reaper starts children and collects each exit exactly once; a signal
// goes through the child's pidfd, so it cannot reach a stranger that reused
// the pid.
func ExampleReaper() {
	r, err := reap.New()
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}}

	quick, err := r.Start("/bin/sh", []string{"sh", "-c", "exit 3"}, attr)
	if err != nil {
		log.Fatal(err)
	}
	slow, err := r.Start("/bin/sleep", []string{"sleep", "60"}, attr)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	st, err := quick.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sh:", st, "success:", st.Success())

	if err := slow.Signal(syscall.SIGTERM); err != nil {
		log.Fatal(err)
	}
	<-slow.Done() // or Wait
	st, _ = slow.Status()
	fmt.Println("sleep:", st, "exited:", st.Exited())
	// Output:
	// sh: exit status 3 success: false
	// sleep: signal: terminated exited: false
}
