// Package load drives keep-alive HTTP/1.1 load at a local server and
// records every request, so that a restart can be judged by its failures
// and by the latency and throughput around it.
//
// C clients run concurrently, each on its own connection, until a duration
// has passed, a request count is reached, or the load is stopped:
//
//	l, err := load.Start(ctx, "127.0.0.1:8080", load.WithClients(64), load.WithDuration(time.Minute))
//	// ... restart the server ...
//	res := l.Stop()
//	fmt.Println(res.Stats().ByKind[load.OK], res.Stats(load.Window{From: t0, To: t1}).P99)
//
// # Clients
//
// [Raw] is a hand-written HTTP/1.1 client over a net.Conn that never
// retries: it writes one request, reads the status line, the headers and a
// Content-Length, chunked or close-delimited body, and reuses the connection.
// It dials again only after a complete response that said Connection: close
// (or had no length), or after a failure. Like wrk, it does not look for a
// FIN before reusing a connection, so a server that closes a connection it
// believes idle while a request is on its way is seen as a failure.
//
// [NetHTTP] is Go's net/http client with one connection per client. It
// silently retries an idempotent request (GET without a body) that fails on
// a reused connection before any response byte, and checks an idle
// connection for a FIN before reusing it, so it hides the keep-alive close
// race that [Raw] exposes. A POST is never retried: in that mode POST
// failures are what a careful real client sees.
//
// # Failures
//
// Every request ends as one [Kind]: [OK], or one failure kind — [Refused]
// (the dial got ECONNREFUSED), [Reset] (ECONNRESET or EPIPE), [EOFBeforeResponse]
// (the connection ended before any byte of the response), [EOFMidResponse],
// [Timeout], [Non200] or [Other]. Counts are exact: every request started is
// recorded once, with its start time and duration, as a [Sample]. Requests
// cut short by cancelling the context given to [Start] are not recorded;
// they are counted in [Result.Aborted].
//
// # Safety
//
// Traffic goes only to loopback addresses given as IP literals
// (127.0.0.0/8, ::1); any other address is refused with [ErrNotLoopback].
// Every loop is bounded by the context and by the duration ([WithDuration],
// 10 s unless set), and each request by its timeout ([WithTimeout]).
//
// Error classification relies on errno values and is exact on Linux; on
// other systems unusual errors may be counted as [Other].
package load
