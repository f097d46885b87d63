// Package notify is the supervisor's end of the sd_notify protocol: the unix datagram socket
// whose name workers find in $NOTIFY_SOCKET, and the parser of what they send on it.
//
// A worker sends datagrams of newline-separated KEY=VALUE assignments ("READY=1",
// "STATUS=serving"), as systemd's sd_notify does. The socket has SO_PASSCRED set, so the kernel
// attaches the sender's pid to every datagram; that pid, not anything the sender claims, says
// who sent it. Descriptors sent along (FDSTORE=1) are closed; datagrams that cannot be read are
// counted by reason (Drops). The socket can be handed across an in-place exec (Control, FromFd).
//
// It owns no policy: which pid is a worker, and what READY=1 does, are the supervisor's.
package notify
