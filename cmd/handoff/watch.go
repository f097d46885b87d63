package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\033[H\033[2J"

// watchStatus is "status -watch": the status every cfg.watch until
// SIGINT or SIGTERM, which end it with status 0. On a terminal each refresh
// replaces the last in place; elsewhere they follow each other, a blank
// line apart (one JSON line each with -json). A failed request shows its
// error and is tried again at the next refresh: the handoff may be
// upgrading or restarting.
func watchStatus(cfg *clientConfig, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tty := false
	if f, ok := stdout.(*os.File); ok {
		fi, err := f.Stat()
		tty = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	tick := time.NewTicker(cfg.watch)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		st, err := client(rctx, cfg, io.Discard)
		cancel()
		if ctx.Err() != nil {
			return exitOK
		}
		var b bytes.Buffer
		switch {
		case cfg.json:
			r := response{OK: err == nil, Status: st}
			if err != nil {
				r.Error = err.Error()
			}
			j, _ := json.Marshal(r)
			fmt.Fprintf(&b, "%s\n", j)
		case err != nil:
			fmt.Fprintf(&b, "%s  handoff status: %v\n", time.Now().Format(time.TimeOnly), err)
		default:
			printStatus(&b, st)
		}
		switch {
		case tty:
			io.WriteString(stdout, clearScreen)
		case !cfg.json:
			b.WriteString("\n")
		}
		if _, err := stdout.Write(b.Bytes()); err != nil {
			fmt.Fprintf(stderr, "handoff status: %v\n", err)
			return exitFailure
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}
