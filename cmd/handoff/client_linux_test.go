//go:build linux

package main

import (
	"context"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestClosedWithoutAnswer: a connection whose other end is gone before
// the request is written fails the write with EPIPE, as one queued on the
// control socket of a program that execs does (seen as a flake of
// TestControlSubcommands/upgrade: "write: broken pipe"); it is a
// connection ended without an answer, which status retries.
func TestClosedWithoutAnswer(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "client")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = exchange(context.Background(), conn, command{op: opStatus})
	if err == nil || !closedWithoutAnswer(err) {
		t.Errorf("exchange on a connection without a peer: %v; want an error closedWithoutAnswer accepts", err)
	}
}
