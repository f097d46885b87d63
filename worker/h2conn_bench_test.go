package worker

import (
	"net"
	"testing"
)

// discardConn is a net.Conn whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// h2Stream is what a server writes for responses: a HEADERS frame and 16
// KiB DATA frames, as net/http's HTTP/2 server does with its defaults.
func h2Stream() []byte {
	var b []byte
	for range 8 {
		b = append(b, rawFrame(0x1, 0x4, 1, make([]byte, 40))...)
		b = append(b, rawFrame(frameData, 0, 1, make([]byte, 16384))...)
	}
	return b
}

// BenchmarkFrameScanner is the cost of following frame boundaries, per
// byte written, fed in 4 KiB writes (net/http's HTTP/2 write buffer).
func BenchmarkFrameScanner(b *testing.B) {
	data := h2Stream()
	b.SetBytes(int64(len(data)))
	var s frameScanner
	for b.Loop() {
		for p := data; len(p) > 0; {
			n := min(4096, len(p))
			s.feed(p[:n], nil)
			p = p[n:]
		}
	}
}

// BenchmarkH2ConnWrite is what the wrapper adds to a write outside a drain
// (locks and the scanner), against the bare connection: compare ns/op
// with BenchmarkBareConnWrite.
func BenchmarkH2ConnWrite(b *testing.B) {
	data := h2Stream()
	h := newH2Conn(discardConn{}, nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for p := data; len(p) > 0; {
			n := min(4096, len(p))
			h.Write(p[:n])
			p = p[n:]
		}
	}
}

func BenchmarkBareConnWrite(b *testing.B) {
	data := h2Stream()
	var c net.Conn = discardConn{}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for p := data; len(p) > 0; {
			n := min(4096, len(p))
			c.Write(p[:n])
			p = p[n:]
		}
	}
}
