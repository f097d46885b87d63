package worker

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// scanned is what a frameScanner reports of one frame, copied.
type scanned struct {
	end    int // offset just after the frame in the bytes fed
	length uint32
	typ    uint8
	flags  uint8
	stream uint32
	head   string
}

// scanSplit feeds data to a new scanner in pieces cut at the given
// offsets (taken modulo len(data)+1; an offset not past the one before is
// skipped), and returns the frames it reported, the offsets at the end of
// a piece where it said it was at a boundary, and the scanner.
func scanSplit(data []byte, cuts []int) (frames []scanned, boundaries []int, s *frameScanner) {
	s = new(frameScanner)
	off := 0
	feed := func(p []byte) {
		s.feed(p, func(f frame) {
			frames = append(frames, scanned{length: f.length, typ: f.typ, flags: f.flags, stream: f.stream, head: string(f.head)})
		})
		off += len(p)
		if s.boundary() {
			boundaries = append(boundaries, off)
		}
	}
	prev := 0
	for _, c := range cuts {
		if len(data) == 0 {
			break
		}
		c %= len(data) + 1
		if c < 0 {
			c += len(data) + 1
		}
		if c <= prev {
			continue
		}
		feed(data[prev:c])
		prev = c
	}
	feed(data[prev:])
	return frames, boundaries, s
}

// reference parses data in one go, the obvious way: the frames, and every
// offset that is a frame boundary.
func reference(data []byte) (frames []scanned, boundaries map[int]bool) {
	boundaries = map[int]bool{0: true}
	off := 0
	for len(data)-off >= frameHeaderLen {
		n := int(data[off])<<16 | int(data[off+1])<<8 | int(data[off+2])
		if len(data)-off-frameHeaderLen < n {
			break
		}
		head := data[off+frameHeaderLen : off+frameHeaderLen+min(n, 8)]
		frames = append(frames, scanned{
			end:    off + frameHeaderLen + n,
			length: uint32(n),
			typ:    data[off+3],
			flags:  data[off+4],
			stream: binary.BigEndian.Uint32(data[off+5:]) & (1<<31 - 1),
			head:   string(head),
		})
		off += frameHeaderLen + n
		boundaries[off] = true
	}
	return frames, boundaries
}

func checkScan(t *testing.T, data []byte, cuts []int) {
	frames, boundaries, s := scanSplit(data, cuts)
	want, wantBoundaries := reference(data)
	if len(frames) != len(want) {
		t.Fatalf("%d frames, want %d (cuts %v)", len(frames), len(want), cuts)
	}
	for i := range frames {
		w := want[i]
		w.end = 0
		if frames[i] != w {
			t.Fatalf("frame %d: %+v, want %+v (cuts %v)", i, frames[i], w, cuts)
		}
	}
	if s.frames != uint64(len(want)) {
		t.Fatalf("scanner counted %d frames, want %d", s.frames, len(want))
	}
	for _, b := range boundaries {
		if !wantBoundaries[b] {
			t.Fatalf("scanner said offset %d is a boundary; it is not (cuts %v)", b, cuts)
		}
	}
	// The end of the data is a boundary exactly when the reference
	// parsed all of it.
	end := len(data)
	if s.boundary() != wantBoundaries[end] {
		t.Fatalf("at the end (%d bytes) boundary() = %v, want %v", end, s.boundary(), wantBoundaries[end])
	}
}

// frames builds a byte stream of frames.
func framesOf(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

func rawFrame(typ, flags uint8, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

func TestFrameScanner(t *testing.T) {
	ping := appendFrame(nil, framePing, flagAck, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	data := framesOf(
		rawFrame(0x4, 0, 0, nil),                        // SETTINGS, empty
		rawFrame(0x1, 0x4, 1, []byte{0x88}),             // HEADERS
		rawFrame(frameData, 0x1, 1, make([]byte, 3000)), // DATA
		ping,
		appendFrame(nil, frameGoAway, 0, goAwayPayload(1<<31-1, 0)),
	)
	for _, cuts := range [][]int{nil, {1}, {8, 9, 10}, {5, 20, 1000, 3010, 3015}, {len(data) - 1}} {
		checkScan(t, data, cuts)
	}
	// Byte by byte.
	var cuts []int
	for i := range data {
		cuts = append(cuts, i)
	}
	checkScan(t, data, cuts)

	frames, _, _ := scanSplit(data, nil)
	if f := frames[3]; f.typ != framePing || f.flags != flagAck || f.head != "\x01\x02\x03\x04\x05\x06\x07\x08" {
		t.Errorf("PING: %+v", f)
	}
	if f := frames[4]; f.typ != frameGoAway || f.head != "\x7f\xff\xff\xff\x00\x00\x00\x00" {
		t.Errorf("GOAWAY: %+v", f)
	}
	// A header announcing the largest length, and no payload: mid-frame.
	_, _, s := scanSplit([]byte{0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff}, nil)
	if s.boundary() || s.left != 1<<24-1 {
		t.Errorf("after a header of a 2^24-1 byte frame: boundary %v, left %d", s.boundary(), s.left)
	}
}

// FuzzFrameScanner: any bytes, split anywhere, give the frames and the
// boundaries a one-piece parse gives, and never a panic.
func FuzzFrameScanner(f *testing.F) {
	f.Add(framesOf(rawFrame(0x4, 0, 0, nil), appendFrame(nil, framePing, 0, [8]byte{})), 3, 12, 17)
	f.Add(appendFrame(nil, frameGoAway, 0, goAwayPayload(5, 0)), 0, 9, 16)
	f.Add(rawFrame(frameData, 1, 3, []byte("hello, world")), 4, 10, 30)
	f.Add([]byte{0xff, 0xff, 0xff, 7, 0, 0, 0, 0, 0, 1}, 1, 2, 3)
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 5, 6, 7)
	f.Add([]byte{}, 0, 0, 0)
	f.Fuzz(func(t *testing.T, data []byte, a, b, c int) {
		checkScan(t, data, []int{a, b, c})
		// The same bytes fed one at a time.
		cuts := make([]int, len(data))
		for i := range cuts {
			cuts[i] = i
		}
		checkScan(t, data, cuts)
	})
}
