package worker

import (
	"fmt"
	"os"
	"strings"
)

const (
	envNotifySocket = "NOTIFY_SOCKET"
	// notifyMax is the largest datagram a service manager reads (systemd's NOTIFY_BUFFER_MAX);
	// a larger one is dropped by the receiver.
	notifyMax = 4096
	// maxSockaddrPath is the room in sockaddr_un.sun_path for a name, less the path's final NUL.
	maxSockaddrPath = 107
)

// Notify sends state, newline-separated KEY=VALUE assignments such as "READY=1\nSTATUS=serving",
// to the service manager named by $NOTIFY_SOCKET: handoff's supervisor, or systemd. The variable
// holds a socket path or "@name" for a socket in the abstract namespace. Notify returns
// (false, nil) when NOTIFY_SOCKET is unset or empty, so a program can call it unconditionally; it
// does not unset the variable, so that later calls reach the same manager.
//
// Each call sends one datagram from a new socket, as libsystemd's sd_notify does; the receiver
// learns the sender's pid from the kernel. The send blocks while the receiver's queue is full. An
// empty state, one over 4096 bytes (which the receiver would drop) or one holding a NUL byte is
// refused, and so is a NOTIFY_SOCKET that is neither an absolute path nor "@name"; a socket that
// cannot be reached gives the system's error (e.g. [syscall.ENOENT]), naming the socket.
// Elsewhere than on Linux, Notify returns an error wrapping [handoff.ErrNotSupported] unless NOTIFY_SOCKET
// is unset.
func Notify(state string) (sent bool, err error) {
	sock := os.Getenv(envNotifySocket)
	if sock == "" {
		return false, nil
	}
	if !strings.HasPrefix(sock, "/") && (sock[0] != '@' || sock == "@") || len(sock) > maxSockaddrPath {
		return false, fmt.Errorf("worker: %s=%q: want an absolute path or @name, at most %d bytes", envNotifySocket, sock, maxSockaddrPath)
	}
	switch {
	case state == "":
		return false, fmt.Errorf("worker: notify %s: empty state", sock)
	case len(state) > notifyMax:
		return false, fmt.Errorf("worker: notify %s: state of %d bytes, more than %d", sock, len(state), notifyMax)
	case strings.IndexByte(state, 0) >= 0:
		return false, fmt.Errorf("worker: notify %s: state holds a NUL byte", sock)
	}
	if err := sendNotify(sock, state); err != nil {
		return false, err
	}
	return true, nil
}

// Ready tells the supervisor that this worker is serving: Notify("READY=1"). Call it once the
// listeners are in use, i.e. accepting. Without NOTIFY_SOCKET it does nothing and returns nil.
func Ready() error {
	_, err := Notify("READY=1")
	return err
}

// Stopping tells the supervisor that this worker is shutting down: Notify("STOPPING=1"). Without
// NOTIFY_SOCKET it does nothing and returns nil.
func Stopping() error {
	_, err := Notify("STOPPING=1")
	return err
}
