package worker

// frameScanner follows the frame boundaries in one direction of an HTTP/2
// connection (after the client preface), fed the bytes in any split. Every
// frame is a 9-byte header (a 24-bit payload length, a type, flags and a
// stream id) and its payload; the scanner reads only the header, keeps the
// first 8 bytes of each payload, and never allocates.
//
// It parses what a peer sent, so it accepts any bytes: a length up to
// 2^24-1 whatever the peer announced as its maximum, any type, any flags.
type frameScanner struct {
	hdr    [frameHeaderLen]byte
	hn     int    // bytes of hdr seen for the current frame
	left   uint32 // payload bytes still to come once hdr is complete
	head   [8]byte
	headN  int    // bytes of head seen
	frames uint64 // complete frames seen
}

const frameHeaderLen = 9

// HTTP/2 frame types and flags the drain sends or looks for (RFC 9113 §6).
const (
	frameData   = 0x0
	framePing   = 0x6
	frameGoAway = 0x7
	flagAck     = 0x1
)

// frame is one complete frame as the scanner saw it.
type frame struct {
	length uint32
	typ    uint8
	flags  uint8
	stream uint32
	head   []byte // the first min(length, 8) payload bytes; valid during the call only
}

// boundary reports whether the bytes fed so far end exactly between two
// frames.
func (s *frameScanner) boundary() bool { return s.hn == 0 }

// feed consumes p, calling f (if not nil) for each frame it completes, in
// order.
func (s *frameScanner) feed(p []byte, f func(frame)) {
	for len(p) > 0 {
		if s.hn < frameHeaderLen {
			n := copy(s.hdr[s.hn:], p)
			s.hn += n
			p = p[n:]
			if s.hn < frameHeaderLen {
				return
			}
			s.left = uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2])
			s.headN = 0
			if s.left == 0 {
				s.complete(f)
			}
			continue
		}
		n := uint32(len(p))
		if n > s.left {
			n = s.left
		}
		if s.headN < len(s.head) {
			s.headN += copy(s.head[s.headN:], p[:n])
		}
		s.left -= n
		p = p[n:]
		if s.left == 0 {
			s.complete(f)
		}
	}
}

// complete ends the current frame.
func (s *frameScanner) complete(f func(frame)) {
	s.frames++
	s.hn = 0
	if f == nil {
		return
	}
	f(frame{
		length: uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2]),
		typ:    s.hdr[3],
		flags:  s.hdr[4],
		stream: (uint32(s.hdr[5])<<24 | uint32(s.hdr[6])<<16 | uint32(s.hdr[7])<<8 | uint32(s.hdr[8])) & (1<<31 - 1),
		head:   s.head[:s.headN],
	})
}

// appendFrame appends a frame with an 8-byte payload on stream 0 (PING and
// GOAWAY without debug data are such frames).
func appendFrame(b []byte, typ, flags uint8, payload [8]byte) []byte {
	b = append(b, 0, 0, 8, typ, flags, 0, 0, 0, 0)
	return append(b, payload[:]...)
}

// goAwayPayload is a GOAWAY's payload without debug data.
func goAwayPayload(lastStream, code uint32) [8]byte {
	return [8]byte{
		byte(lastStream >> 24 & 0x7f), byte(lastStream >> 16), byte(lastStream >> 8), byte(lastStream),
		byte(code >> 24), byte(code >> 16), byte(code >> 8), byte(code),
	}
}
