// Package endpoint runs the supervisor's own HTTP servers (metrics, health) on sockets that
// survive an in-place upgrade: a Server binds or adopts its socket, serves a duplicate of it
// without keep-alive, and stops without losing a connection the kernel has queued, so that the
// next program answers it. Health is the /livez and /readyz handler. What is served is the
// caller's.
package endpoint
