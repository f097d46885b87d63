// Package e2e holds handoff's end-to-end tests: the example server, the
// worker-only echo program and their variants are built once, then run as
// real supervisors and workers, on real sockets, under real load, signals
// and failures. It has no code of its own; the tests run on Linux only.
//
//	go test -race -count=1 ./e2e/
package e2e
