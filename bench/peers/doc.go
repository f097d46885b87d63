// Package peers writes the configuration of the servers handoff is
// compared with, for the benchmarks in bench/compare: nginx, with a config
// that answers 200 on a loopback port from a private prefix, and gunicorn,
// with a tiny WSGI application and its command line.
//
// Both answer like handoff's example: status 200, the headers X-Worker-Pid,
// X-Generation and X-Version, and a body naming the worker. The Go peers
// are commands beside this package: goserver (net/http alone, optionally
// SO_REUSEPORT) and tableflip (github.com/cloudflare/tableflip).
//
// Everything listens on a loopback IP literal only; other addresses are
// refused with [ErrNotLoopback].
package peers

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Errors returned for bad parameters.
var (
	// ErrNotLoopback is returned for an address that is not a loopback IP
	// literal with a non-zero port.
	ErrNotLoopback = errors.New("peers: address is not a loopback IP and port")
	// ErrBadPath is returned for a directory that is not absolute or holds
	// a character the configuration could not quote.
	ErrBadPath = errors.New("peers: unusable path")
)

// checkAddr accepts "127.0.0.1:8080" or "[::1]:8080" and returns it in
// canonical form.
func checkAddr(addr string) (string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return "", fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

// checkDir accepts an absolute, clean path without quotes, backslashes,
// dollars, semicolons, braces, whitespace or control characters: it is
// written into configuration files and command lines.
func checkDir(what, dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("%w: %s %q is not an absolute clean path", ErrBadPath, what, dir)
	}
	if i := strings.IndexFunc(dir, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(`"'\$;{}#`, r)
	}); i >= 0 {
		r, _ := utf8.DecodeRuneInString(dir[i:])
		return fmt.Errorf("%w: %s %q contains %q", ErrBadPath, what, dir, r)
	}
	return nil
}
