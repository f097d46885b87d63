package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// procNetTCPSample is /proc/net/tcp and tcp6 text as a little-endian
// machine prints it: a listener on 0.0.0.0:2024, a TIME_WAIT between two
// loopback ports, an established IPv6 loopback socket.
const procNetTCPSample = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1062 1 00000000eede91ce 100 0 0 10 0
   1: 0100007F:B605 0100007F:9640 06 00000000:00000000 03:00000895 00000000     0        0 0 3 0000000014b2d492
   2: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1
`

func TestParseProcNetTCP(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the sample is a little-endian machine's")
	}
	got, err := parseProcNetTCP([]byte(procNetTCPSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []tcpSocket{
		{netip.MustParseAddrPort("0.0.0.0:2024"), netip.MustParseAddrPort("0.0.0.0:0"), tcpListen, 1062},
		{netip.MustParseAddrPort("127.0.0.1:46597"), netip.MustParseAddrPort("127.0.0.1:38464"), tcpTimeWait, 0},
		{netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[::1]:54321"), tcpEstablished, 777},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parsed\n%v\nwant\n%v", got, want)
	}
	for _, bad := range []string{
		"0: 0100007F:B605 0100007F:9640 06 0 0 0 0 0",                           // 9 fields
		"0 0100007F:B605 0100007F:9640 06 0 0 0 0 0 1",                          // slot without ':'
		"0: 0100007F 0100007F:9640 06 0 0 0 0 0 1",                              // no port
		"0: 0100007G:B605 0100007F:9640 06 0 0 0 0 0 1",                         // not hex
		"0: 0100007F:B605 0100007F:96400 06 0 0 0 0 0 1",                        // 5-digit port
		"0: 0100007F:B605 0100007F:9640 6 0 0 0 0 0 1",                          // 1-digit state
		"0: 0100007F:B605 0100007F:9640 06 0 0 0 0 0 x",                         // inode
		"0: 0100007F:B605 0100007F:9640 06 0 0 0 0 0 -1",                        // negative inode
		"0: 00000000000000000000000001000000:1F90 0100007F:9640 01 0 0 0 0 0 1", // mixed families
		"0: 0100007F00:B605 0100007F:9640 06 0 0 0 0 0 1",                       // 10 digits
	} {
		if _, err := parseProcNetTCP([]byte("header\n" + bad + "\n")); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// FuzzParseProcNetTCP: no input panics, and whatever parses prints back,
// as the kernel would, to the same sockets.
func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte(procNetTCPSample))
	f.Add([]byte("h\n0: 0100007F:B605 0100007F:9640 06 0 0 0 0 0 0\n"))
	f.Add([]byte("h\n0: :: :: 0 0 0 0 0 0 0\n\n\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		got, err := parseProcNetTCP(text)
		if err != nil {
			return
		}
		var b strings.Builder
		b.WriteString("header\n")
		for i, s := range got {
			fmt.Fprintf(&b, "%4d: %s %s %02X 00000000:00000000 00:00000000 00000000 0 0 %d 1\n", i,
				formatHexAddrPort(s.Local), formatHexAddrPort(s.Remote), s.State, s.Inode)
		}
		again, err := parseProcNetTCP([]byte(b.String()))
		if err != nil {
			t.Fatalf("printed %q does not parse: %v", b.String(), err)
		}
		if fmt.Sprint(again) != fmt.Sprint(got) {
			t.Fatalf("round trip:\n%v\n%v", got, again)
		}
	})
}
