//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "rolls: not supported on %s: the example supervisor runs on Linux only\n", runtime.GOOS)
	os.Exit(2)
}
