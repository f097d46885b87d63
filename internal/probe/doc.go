// Package probe checks that a new generation serves, for servers whose "ready" lies (gunicorn
// without --preload says READY=1 before it imports the app): an HTTP GET whose status must be
// 2xx or 3xx, a TCP connect, or a command run against each canary, as Kubernetes' probes do.
// HTTP and TCP attempts are spread over the accept window; a command runs through the
// supervisor's reaper, the one waiter for its children. When to probe, and what a failure
// does to a roll, are the supervisor's.
package probe
