package worker

import "context"

// hurryKey is the context key of the channel Run closes when the worker is
// told a second time to stop.
type hurryKey struct{}

// hurried returns the channel that is closed when the worker is asked to
// stop a second time (a second SIGTERM or SIGINT): its drain deadline is
// then now. It is nil, never closed, for a context not from Run.
func hurried(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(hurryKey{}).(chan struct{})
	return ch
}
