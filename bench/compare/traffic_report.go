package main

import (
	"fmt"
	"slices"

	"github.com/handoff-dev/handoff/bench/internal/mdtable"
)

// trafficRun is one subject's run of one traffic kind through restarts.
type trafficRun struct {
	kind           string
	subject        string
	round          int
	t              *tally // nil if the clients never started
	restarts       int    // signals sent
	seen           int    // restarts seen complete before the next was due
	failedRestarts []string
	leftover       int
	err            error
}

// spread renders min / median / max of xs.
func spread(xs []int) string {
	if len(xs) == 0 {
		return "–"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return fmt.Sprintf("%d / %d / %d", s[0], s[len(s)/2], s[len(s)-1])
}

// trafficSubjectsIn returns the subjects of runs of kind, in first-seen order.
func trafficSubjectsIn(runs []*trafficRun, kind string) []string {
	var subs []string
	for _, r := range runs {
		if r.kind == kind && !slices.Contains(subs, r.subject) {
			subs = append(subs, r.subject)
		}
	}
	return subs
}

func writeTraffic(p printer, runs []*trafficRun, cfg config) {
	p("## Traffic a drain can hurt: pooled and polling clients, HTTP/2, streams\n\n")
	p("Each run drives one kind of client at a fresh subject for %v, then sends %d restarts one every %v (handoff and tableflip: SIGHUP; nginx: `nginx -s reload`), then %v more; the clients then stop starting requests and the ones in flight finish. Spreads are min / median / max over the %d rounds. A failed request is any error or non-200 answer; Go's client retries idempotent requests, so the HTTP/1.1 and h2 clients POST.\n\n",
		cfg.warmup, cfg.traffic, cfg.every, cfg.tail, cfg.rounds)
	p("- **pollers**: %d goroutines POSTing back to back through one pooled `net/http` transport, and %d clients with a connection each POSTing at fixed periods spread evenly over %v–%v (health checkers, scrapers, a proxy's upstream pool).\n",
		pooledClients, pollClients, pollMin, pollMax)
	p("- **h2**: %d goroutines POSTing through one Go HTTP/2 transport with prior knowledge (h2c; handoff and tableflip run with `-h2c`, nginx with `listen … http2`); an answer over HTTP/1.1 counts as failed.\n", h2Clients)
	p("- **streams**: %d clients each reading `%s` again and again: %d lines, one every %v (nginx: the same bytes as one `return 200` at `limit_rate 100`, about 3 s), then `done %d`. A stream is complete with every line and the final one, cut otherwise.\n\n",
		streamClients, streamPath, streamLines, streamEvery, streamLines)
	for _, kind := range trafficKinds {
		if len(trafficSubjectsIn(runs, kind)) == 0 {
			continue
		}
		t := mdtable.New("subject", "rounds", "answered", "failed", "failed per restart", "streams complete", "streams cut", "restarts seen complete", "first failure").Right(1, 2, 3, 4, 5, 6, 7)
		for _, sub := range trafficSubjectsIn(runs, kind) {
			var ok, failed, complete, cut []int
			var restarts, seen, failedSum int
			first := ""
			n := 0
			for _, r := range runs {
				if r.kind != kind || r.subject != sub {
					continue
				}
				n++
				restarts += r.restarts
				seen += r.seen
				if r.t != nil {
					ok = append(ok, r.t.ok)
					failed = append(failed, r.t.failed)
					failedSum += r.t.failed
					if kind == tfStreams {
						complete = append(complete, r.t.complete)
						cut = append(cut, r.t.cut)
					}
					if first == "" {
						first = r.t.first
					}
				}
				if r.err != nil && first == "" {
					first = "run " + errText(r.err)
				}
			}
			perRestart := "–"
			if restarts > 0 {
				perRestart = fmt.Sprintf("%.2f", float64(failedSum)/float64(restarts))
			}
			t.Row(sub, fmt.Sprint(n), spread(ok), spread(failed), perRestart, spread(complete), spread(cut),
				fmt.Sprintf("%d of %d", seen, restarts), mdtable.Escape(first))
		}
		p("### %s\n\n", kind)
		table(p, t)
	}
}
