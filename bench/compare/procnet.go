package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

// tcpSocket is one line of /proc/net/tcp or /proc/net/tcp6: a socket's
// two ends, its state and its inode (0 once no file refers to it, as in
// TIME_WAIT).
type tcpSocket struct {
	Local, Remote netip.AddrPort
	State         uint8 // the kernel's TCP_* number: 1 ESTABLISHED, 6 TIME_WAIT, 10 LISTEN
	Inode         uint64
}

// TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpTimeWait    = 6
	tcpListen      = 10
)

// parseProcNetTCP parses the text of /proc/net/tcp or /proc/net/tcp6: a
// header line, then one socket a line,
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//
// where an address is the kernel's in-memory IPv4 word (or four IPv6
// words) printed as hex in the machine's byte order, and a port is hex in
// host order. It reports the first malformed line as an error, with the
// sockets parsed before it.
func parseProcNetTCP(text []byte) ([]tcpSocket, error) {
	var out []tcpSocket
	for n := 0; len(text) > 0; n++ {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		f := bytes.Fields(line)
		if n == 0 || len(f) == 0 {
			continue // the header; a trailing empty line
		}
		s, err := parseTCPFields(f)
		if err != nil {
			return out, fmt.Errorf("line %d: %w", n+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseTCPFields(f [][]byte) (tcpSocket, error) {
	var s tcpSocket
	if len(f) < 10 {
		return s, fmt.Errorf("%d fields, want at least 10", len(f))
	}
	if !bytes.HasSuffix(f[0], []byte(":")) {
		return s, fmt.Errorf("slot %q", f[0])
	}
	var err error
	if s.Local, err = parseHexAddrPort(f[1]); err != nil {
		return s, fmt.Errorf("local address: %w", err)
	}
	if s.Remote, err = parseHexAddrPort(f[2]); err != nil {
		return s, fmt.Errorf("remote address: %w", err)
	}
	if s.Local.Addr().Is4() != s.Remote.Addr().Is4() {
		return s, fmt.Errorf("an IPv4 and an IPv6 address on one line")
	}
	st, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil || len(f[3]) != 2 {
		return s, fmt.Errorf("state %q", f[3])
	}
	s.State = uint8(st)
	if s.Inode, err = strconv.ParseUint(string(f[9]), 10, 64); err != nil {
		return s, fmt.Errorf("inode %q", f[9])
	}
	return s, nil
}

// parseHexAddrPort parses "0100007F:1F90" (127.0.0.1:8080 on a
// little-endian machine) or its 32-digit IPv6 form.
func parseHexAddrPort(b []byte) (netip.AddrPort, error) {
	h, p, ok := bytes.Cut(b, []byte(":"))
	if !ok || len(p) != 4 {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDR:PORT in hex", b)
	}
	port, err := strconv.ParseUint(string(p), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q", p)
	}
	if len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, fmt.Errorf("address %q: %d hex digits, want 8 or 32", h, len(h))
	}
	var raw [16]byte
	for i := 0; i < len(h)/8; i++ {
		w, err := strconv.ParseUint(string(h[8*i:8*i+8]), 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q", h)
		}
		binary.NativeEndian.PutUint32(raw[4*i:], uint32(w))
	}
	if len(h) == 8 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[:4])), uint16(port)), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom16(raw), uint16(port)), nil
}

// formatHexAddrPort is parseHexAddrPort's inverse, as the kernel prints.
func formatHexAddrPort(ap netip.AddrPort) string {
	raw := ap.Addr().AsSlice()
	var b []byte
	for i := 0; i < len(raw); i += 4 {
		b = fmt.Appendf(b, "%08X", binary.NativeEndian.Uint32(raw[i:]))
	}
	return fmt.Sprintf("%s:%04X", b, ap.Port())
}
