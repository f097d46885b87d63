package metrics

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// listenOverflows reads TcpExt ListenOverflows from /proc/net/netstat: the
// connections dropped because an accept queue was full, for every TCP
// listener of this network namespace. false where there is no such file.
func listenOverflows() (uint64, bool) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, false
	}
	return parseNetstat(b, "TcpExt", "ListenOverflows")
}

// parseNetstat finds field in /proc/net/netstat's format: pairs of lines,
// "Prefix: Name1 Name2 …" then "Prefix: value1 value2 …".
func parseNetstat(b []byte, prefix, field string) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var names []string
	for sc.Scan() {
		p, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || p != prefix {
			names = nil
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		if len(f) != len(names) {
			return 0, false
		}
		for i, n := range names {
			if n == field {
				v, err := strconv.ParseUint(f[i], 10, 64)
				return v, err == nil
			}
		}
		return 0, false
	}
	return 0, false
}
