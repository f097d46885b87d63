package listener

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Addr is an address to listen on, with the name the socket gets in LISTEN_FDNAMES.
type Addr struct {
	Name    string // name in LISTEN_FDNAMES; "" means systemd's default "unknown"
	Network string // "tcp", "tcp4", "tcp6" or "unix"
	Address string // "host:port"; a filesystem path; or "@name" for an abstract unix socket
}

const (
	// maxNameLen is systemd's FDNAME_MAX.
	maxNameLen = 255
	// maxUnixPath is the longest filesystem path that fits sun_path (108 bytes) with its NUL.
	maxUnixPath = 107
	// maxAbstract is the longest abstract name, counting the leading '@' that stands for the
	// NUL byte; abstract names are not NUL-terminated.
	maxAbstract = 108
	// maxHostLen is the longest DNS name.
	maxHostLen = 253
)

// ParseAddr parses an address written as
//
//	[name=]tcp://host:port     also tcp4:// and tcp6://; an IPv6 host goes in brackets
//	[name=]unix:///abs/path    or unix://relative/path
//	[name=]unix://@abstract    an abstract unix socket (no file)
//	[name=]host:port           TCP
//
// The host may be empty (":8080" means all addresses), an IP address or a DNS name; the port is a
// number from 0 to 65535. The name follows systemd's rules for LISTEN_FDNAMES (at most 255
// printable ASCII characters, no ':') and, so that [Addr.String] can be parsed back, has no '='.
// The error names the part that is wrong.
func ParseAddr(s string) (Addr, error) {
	a, err := parseAddr(s)
	if err != nil {
		return Addr{}, fmt.Errorf("listener: address %s: %w", quote(s), err)
	}
	return a, nil
}

func parseAddr(s string) (Addr, error) {
	var a Addr
	rest := s
	if eq := strings.IndexByte(s, '='); eq >= 0 {
		if sep := strings.Index(s, "://"); sep < 0 || eq < sep {
			a.Name, rest = s[:eq], s[eq+1:]
			if a.Name == "" {
				return Addr{}, errors.New("empty name before '='")
			}
			if err := checkName(a.Name); err != nil {
				return Addr{}, err
			}
		}
	}
	scheme, addr, ok := strings.Cut(rest, "://")
	if !ok {
		if strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, "@") {
			return Addr{}, fmt.Errorf("missing port in %s (a unix socket is written unix://%s)", quote(rest), rest)
		}
		scheme, addr = "tcp", rest
	}
	switch scheme {
	case "tcp", "tcp4", "tcp6":
		hp, err := canonicalHostPort(scheme, addr)
		if err != nil {
			return Addr{}, err
		}
		a.Network, a.Address = scheme, hp
	case "unix":
		if err := checkUnixPath(addr); err != nil {
			return Addr{}, err
		}
		a.Network, a.Address = scheme, addr
	default:
		return Addr{}, fmt.Errorf("unknown scheme %s (want tcp, tcp4, tcp6 or unix)", quote(scheme))
	}
	return a, nil
}

// String returns the address in the form ParseAddr reads: "[name=]network://address".
func (a Addr) String() string {
	var b strings.Builder
	if a.Name != "" {
		b.WriteString(a.Name)
		b.WriteByte('=')
	}
	b.WriteString(a.Network)
	b.WriteString("://")
	b.WriteString(a.Address)
	return b.String()
}

// validate checks an Addr that may have been built by hand rather than parsed.
func (a Addr) validate() error {
	if err := checkName(a.Name); err != nil {
		return err
	}
	switch a.Network {
	case "tcp", "tcp4", "tcp6":
		_, err := canonicalHostPort(a.Network, a.Address)
		return err
	case "unix":
		return checkUnixPath(a.Address)
	case "":
		return errors.New("no network (want tcp, tcp4, tcp6 or unix)")
	default:
		return fmt.Errorf("unknown network %s (want tcp, tcp4, tcp6 or unix)", quote(a.Network))
	}
}

// checkName applies systemd's rules for a name in LISTEN_FDNAMES, plus no '=', which separates
// the name from the address in ParseAddr's syntax.
func checkName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("name is %d bytes long, LISTEN_FDNAMES allows at most %d", len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c < ' ' || c > '~':
			return fmt.Errorf("name %s has byte %#02x; LISTEN_FDNAMES allows printable ASCII only", quote(name), c)
		case c == ':':
			return fmt.Errorf("name %s has ':', the LISTEN_FDNAMES separator", quote(name))
		case c == '=':
			return fmt.Errorf("name %s has '=', which ends a name in an address", quote(name))
		}
	}
	return nil
}

// canonicalHostPort checks "host:port" for network and returns it in canonical form: IP
// addresses as netip prints them, the port without leading zeros, IPv6 in brackets.
func canonicalHostPort(network, s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address (want host:port)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			if ae.Err == "too many colons in address" {
				return "", fmt.Errorf("%s: %s (an IPv6 host goes in brackets: [::1]:80)", quote(s), ae.Err)
			}
			return "", fmt.Errorf("%s: %s", quote(s), ae.Err)
		}
		return "", fmt.Errorf("%s: %w", quote(s), err)
	}
	if port == "" {
		return "", fmt.Errorf("%s: missing port", quote(s))
	}
	p, ok := parseDecimal(port)
	if !ok || p > 65535 {
		return "", fmt.Errorf("%s: bad port %s (want a number from 0 to 65535)", quote(s), quote(port))
	}
	host, err = canonicalHost(network, host)
	if err != nil {
		return "", fmt.Errorf("%s: %w", quote(s), err)
	}
	return net.JoinHostPort(host, strconv.FormatInt(p, 10)), nil
}

func canonicalHost(network, host string) (string, error) {
	if host == "" {
		return "", nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case network == "tcp4" && !ip.Unmap().Is4():
			return "", fmt.Errorf("host %s is not an IPv4 address, as tcp4 needs", quote(host))
		case network == "tcp6" && !ip.Is6():
			return "", fmt.Errorf("host %s is not an IPv6 address, as tcp6 needs", quote(host))
		}
		return ip.String(), nil
	}
	if strings.Trim(host, "0123456789.") == "" {
		return "", fmt.Errorf("bad IPv4 address %s", quote(host))
	}
	if len(host) > maxHostLen {
		return "", fmt.Errorf("host is %d bytes long, a DNS name has at most %d", len(host), maxHostLen)
	}
	for label := range strings.SplitSeq(host, ".") {
		if !dnsLabel(label) {
			return "", fmt.Errorf("bad host %s: neither an IP address nor a DNS name", quote(host))
		}
	}
	return host, nil
}

// dnsLabel reports whether s is one label of a host name: 1 to 63 letters, digits, '-' or '_',
// not beginning or ending with '-'.
func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkUnixPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty unix socket path")
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("unix socket path %s has a NUL byte", quote(p))
	case p == "@":
		return errors.New("empty abstract unix socket name")
	case p[0] == '@' && len(p) > maxAbstract:
		return fmt.Errorf("abstract unix socket name is %d bytes long with its '@', sun_path holds %d", len(p), maxAbstract)
	case p[0] != '@' && len(p) > maxUnixPath:
		return fmt.Errorf("unix socket path is %d bytes long, sun_path holds %d plus the NUL", len(p), maxUnixPath)
	}
	return nil
}

// parseDecimal parses a non-negative decimal number of ASCII digits only: no sign, no spaces.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// quote quotes s for an error message, cut short if it is long: the input may be anything.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
