// Package connpass is the wire of connection hand-over: how a draining
// worker gives an idle client connection to its supervisor, and how the
// supervisor gives it to a worker of the newest generation, so that a
// restart costs the client no reconnect.
//
// Each worker has a socket pair with its supervisor (AF_UNIX,
// SOCK_SEQPACKET: one message per datagram, never merged or split). A
// message is a Msg; a connection travels as a descriptor attached to it
// (SCM_RIGHTS), and the kernel keeps the connection's queued bytes with it.
// The exchange:
//
//   - KindServe, worker → supervisor: the listening addresses the worker
//     takes handed connections for; none when it stops taking them.
//   - KindHand, worker → supervisor: a connection (Fd) that came in on Addr,
//     with the worker's ID for it. The worker closes its own copy and keeps
//     the ID until it hears KindDone or gets the connection back.
//   - KindConn, supervisor → worker: a connection to serve as if it had just
//     been accepted on Addr. ID is the supervisor's, to be acknowledged;
//     Returned marks a connection given back to the worker that handed it
//     (ID is then that worker's own): no other worker could take it.
//   - KindAck, worker → supervisor: the KindConn ID was taken (OK) or
//     refused; until then the supervisor keeps its copy of the descriptor.
//   - KindDone, supervisor → worker: the KindHand ID is served elsewhere.
//
// Decode is fed by other processes and is fuzzed. CheckConn is what both
// sides ask of a descriptor before serving it: a connected TCP or unix
// stream socket, nothing else.
//
// The routing (which worker gets a connection) is the supervisor's, in
// router.go; the serving is package worker's.
package connpass
