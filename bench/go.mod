module github.com/handoff-dev/handoff/bench

go 1.26.8

require (
	github.com/cloudflare/tableflip v1.2.3
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/handoff-dev/handoff v0.0.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
)

replace github.com/handoff-dev/handoff => ../

tool github.com/handoff-dev/handoff/example
