package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// version is set at build time (-ldflags "-X main.version=v1.2.3"); without
// it, the module version from the build info is used.
var version = ""

// The exit statuses.
const (
	exitOK      = 0 // a requested stop, or a control command that succeeded
	exitFailure = 1
	exitUsage   = 2 // a bad command line
)

func main() {
	start := time.Now()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, start))
}

// run is handoff with its arguments (without the program name), returning
// the exit status. start is when the program began.
func run(args []string, stdout io.Writer, stderr *os.File, start time.Time) int {
	if len(args) > 0 && args[0] == "help" {
		printHelp(stdout)
		return exitOK
	}
	if len(args) > 0 {
		if o, ok := parseOp(args[0]); ok {
			cfg, err := parseClient(o, args[1:])
			if code, done := parseFailed(err, stdout, stderr); done {
				return code
			}
			return runClient(cfg, stdout, stderr)
		}
	}
	if err := checkTypo(args); err != nil {
		return usageFailed(stderr, err)
	}
	cfg, err := parseServe(args)
	if code, done := parseFailed(err, stdout, stderr); done {
		return code
	}
	if cfg.version {
		fmt.Fprintln(stdout, "handoff", versionString())
		return exitOK
	}
	return serve(cfg, stderr, start)
}

// checkTypo refuses a first word that is no flag, no program on PATH and no
// file, but is close to a subcommand: "handoff relaod" is a typo, not a
// program to supervise.
func checkTypo(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return nil
	}
	if _, err := exec.LookPath(args[0]); err == nil {
		return nil
	}
	if c := closestCommand(args[0]); c != "" {
		return usagef("unknown command %s; did you mean %s?", strconv.Quote(args[0]), c)
	}
	return nil
}

// parseFailed reports a command line that did not parse: help on stdout
// (status 0), anything else on stderr (status 2).
func parseFailed(err error, stdout io.Writer, stderr io.Writer) (code int, done bool) {
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout)
		return exitOK, true
	}
	return usageFailed(stderr, err), true
}

// usageFailed reports a bad command line and returns exitUsage.
func usageFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "handoff: %v\nRun 'handoff -h' for the flags, with examples.\n", err)
	return exitUsage
}

// versionString is the version set at build time, or the module's.
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
