// Command rolls measures rolling restarts of the example supervisor under
// keep-alive load, and fails if a single request fails.
//
//	cd bench && go run ./rolls    # -rolls 100 -clients 64 -workers 4 -steady 5s -mode raw -method both
//
// It builds github.com/handoff-dev/handoff/example into a temporary
// directory, starts it on 127.0.0.1:0 with -workers N, and follows its JSON
// log until the address and N ready workers are known. Then C clients of
// package load (raw: never retry) send GET and POST requests on keep-alive
// connections; the first -steady of load is the steady window. Then it
// sends SIGHUP R times, each time waiting for "roll complete" of the next
// generation (a "roll failed" ends the run), and records the window from
// the signal to the log line. Finally it stops the load, sends SIGTERM,
// expects exit status 0 and the end of the log (every worker gone), reaps
// any orphan (the harness is a child subreaper), and removes its files.
//
// It prints a Markdown table: requests, failures of every kind, latency
// p50/p99/max and throughput, steady against during the rolls; the time
// per roll; the command line and the machine. It exits with status 1 if any
// request failed or anything else went wrong, after printing; 2 on bad flags.
//
// Linux only, like the supervisor.
package main
