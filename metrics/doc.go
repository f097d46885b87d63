// Package metrics exposes a handoff supervisor to Prometheus: a
// prometheus.Collector for programs that already serve /metrics, and a
// Handler that the supervisor serves itself with supervisor.WithMetrics:
//
//	s, err := supervisor.New(cmd,
//		supervisor.WithListen("tcp://:8080"),
//		supervisor.WithMetrics("tcp://127.0.0.1:9100", metrics.Handler))
//
// Every scrape reads one supervisor.Stats (LastStats: never waiting for the
// run loop), the snapshot the handoff
// command's status shows too, so the two agree. The metrics, all prefixed
// handoff_:
//
//	workers{state}                      gauge: starting, ready, retiring, backoff
//	generation, generations_alive       gauges: the generation serving; distinct generations of live workers
//	worker_starts_total                 counter
//	worker_exits_total{reason}          counter: clean, failed, signal, watchdog, recycled, retired
//	rolls_total{result}                 counter: completed, failed, rolled_back
//	upgrades_total{result}              counter: completed, failed (in-place upgrades)
//	roll_duration_seconds               histogram: start of a roll to its end
//	drain_duration_seconds              histogram: a worker asked to exit, to its exit
//	spawn_to_ready_seconds              histogram: a worker's start to its being ready
//	listen_queue_length{socket,addr}    gauge: connections waiting in the accept queue (kernel)
//	listen_queue_max{socket,addr}       gauge: the queue's limit, the listen backlog (kernel)
//	listen_not_served{socket,addr}      gauge: 1 while the queue sits full of unaccepted connections
//	listen_overflows_total              counter: TcpExt ListenOverflows of the supervisor's network
//	                                    namespace, all TCP listeners in it, not only handoff's
//	notify_datagrams_dropped_total{reason} counter: foreign, no_credentials, oversized, malformed
//	handover_connections_total{result}  counter: connections handed over by draining workers: handed, returned, failed
//	handover_refused_total              counter: handed connections a worker refused (offered to the next)
//	handover_in_flight                  gauge: handed connections held, waiting for a worker's acknowledgement
//	build_info{version,goversion}       gauge, always 1
//
// Handler adds the standard process collector. The
// counters count since the supervisor's process started: an in-place
// upgrade hands them on, so they never go backwards while its pid lives.
package metrics
