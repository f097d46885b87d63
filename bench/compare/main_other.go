//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "compare: not supported on %s: the supervisor and the peers run on Linux only\n", runtime.GOOS)
	os.Exit(2)
}
