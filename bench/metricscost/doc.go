// Package metricscost measures what the metrics endpoint costs the
// supervisor: the spawn rate (workers that exit at once, restarted as fast
// as the supervisor can) and the HTTP throughput of two workers, each with
// the endpoint off and on (on: scraped every 100ms, as a busy Prometheus
// would not even do), and the time one scrape takes.
//
//	cd bench && go test -run '^$' -bench . -count 5 ./metricscost | tee new.txt   # then benchstat
//
// Linux only, like the supervisor.
package metricscost
