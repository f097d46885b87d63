package supervisor

import "golang.org/x/sys/unix"

// threadID is the calling thread's id (gettid).
func threadID() int { return unix.Gettid() }
