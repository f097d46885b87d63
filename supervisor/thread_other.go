//go:build !linux

package supervisor

// threadID is -1 where no supervisor runs: no hook ever does.
func threadID() int { return -1 }
