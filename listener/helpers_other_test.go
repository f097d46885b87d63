//go:build !linux

package listener

import (
	"fmt"
	"os"
)

func runHelper(name string) int {
	fmt.Fprintf(os.Stderr, "helper %q: no helpers on this platform\n", name)
	return 2
}

func recordInheritedFds() {}
