package connpass

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says what a message is (see the package comment).
type Kind byte

// The kinds of message.
const (
	KindServe Kind = 'S' // worker → supervisor: Addrs it takes connections for
	KindHand  Kind = 'H' // worker → supervisor: ID (the worker's), Addr, Fd
	KindConn  Kind = 'C' // supervisor → worker: ID, Addr, Returned, Fd
	KindAck   Kind = 'A' // worker → supervisor: ID (of a KindConn), OK
	KindDone  Kind = 'D' // supervisor → worker: ID (of a KindHand) served elsewhere
)

func (k Kind) String() string {
	switch k {
	case KindServe:
		return "serve"
	case KindHand:
		return "hand"
	case KindConn:
		return "conn"
	case KindAck:
		return "ack"
	case KindDone:
		return "done"
	}
	return fmt.Sprintf("kind %#02x", byte(k))
}

// Msg is one message. Fd is not part of the encoding: it is the
// descriptor attached to the datagram (KindHand and KindConn carry one,
// the others none), -1 when there is none.
type Msg struct {
	Kind     Kind
	ID       uint64
	Addr     string   // KindHand, KindConn
	Addrs    []string // KindServe
	OK       bool     // KindAck
	Returned bool     // KindConn
	Fd       int
}

// Limits of a message: its encoding fits a datagram with room to spare.
const (
	MaxAddr  = 512  // bytes in one address
	MaxAddrs = 64   // addresses in a KindServe
	MaxMsg   = 8192 // bytes in an encoded message
)

// version is the first byte after the kind: a peer of another version is
// refused, never guessed at.
const version = 1

// flags
const (
	flagOK       = 1 << 0
	flagReturned = 1 << 1
	flagsKnown   = flagOK | flagReturned
)

// header: kind, version, flags, id (8 bytes, little endian), count of
// strings (2 bytes); then each string as 2 bytes of length and its bytes.
const headerLen = 1 + 1 + 1 + 8 + 2

// carriesFd reports whether a message of kind k has a descriptor attached.
func (k Kind) carriesFd() bool { return k == KindHand || k == KindConn }

// Encode returns m's bytes, or an error naming the field that does not fit
// m.Kind.
func (m Msg) Encode() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	strs := m.strings()
	b := make([]byte, headerLen, headerLen+len(strs)*16)
	b[0], b[1] = byte(m.Kind), version
	if m.OK {
		b[2] |= flagOK
	}
	if m.Returned {
		b[2] |= flagReturned
	}
	binary.LittleEndian.PutUint64(b[3:], m.ID)
	binary.LittleEndian.PutUint16(b[11:], uint16(len(strs)))
	for _, s := range strs {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

// strings returns the strings m's kind encodes.
func (m Msg) strings() []string {
	switch m.Kind {
	case KindServe:
		return m.Addrs
	case KindHand, KindConn:
		return []string{m.Addr}
	}
	return nil
}

// check says what in m does not fit its kind.
func (m Msg) check() error {
	switch m.Kind {
	case KindServe, KindHand, KindConn, KindAck, KindDone:
	default:
		return fmt.Errorf("connpass: unknown message %v", m.Kind)
	}
	if m.OK && m.Kind != KindAck {
		return fmt.Errorf("connpass: %v message with OK set", m.Kind)
	}
	if m.Returned && m.Kind != KindConn {
		return fmt.Errorf("connpass: %v message with Returned set", m.Kind)
	}
	if m.Addr != "" && !m.Kind.carriesFd() {
		return fmt.Errorf("connpass: %v message with an address", m.Kind)
	}
	if len(m.Addrs) > 0 && m.Kind != KindServe {
		return fmt.Errorf("connpass: %v message with a list of addresses", m.Kind)
	}
	if len(m.Addrs) > MaxAddrs {
		return fmt.Errorf("connpass: %d addresses, at most %d", len(m.Addrs), MaxAddrs)
	}
	for _, s := range m.strings() {
		if err := checkAddr(s); err != nil {
			return err
		}
	}
	return nil
}

func checkAddr(s string) error {
	switch {
	case s == "":
		return errors.New("connpass: empty address")
	case len(s) > MaxAddr:
		return fmt.Errorf("connpass: address of %d bytes, at most %d", len(s), MaxAddr)
	}
	return nil
}

// Decode parses a message received from a peer. The result's Fd is -1: the
// descriptor, if any, comes with the datagram, not in it.
func Decode(b []byte) (Msg, error) {
	m := Msg{Fd: -1}
	if len(b) < headerLen {
		return m, fmt.Errorf("connpass: message of %d bytes, shorter than its %d-byte header", len(b), headerLen)
	}
	if len(b) > MaxMsg {
		return m, fmt.Errorf("connpass: message of %d bytes, at most %d", len(b), MaxMsg)
	}
	m.Kind = Kind(b[0])
	switch m.Kind {
	case KindServe, KindHand, KindConn, KindAck, KindDone:
	default:
		return m, fmt.Errorf("connpass: unknown message %v", m.Kind)
	}
	if b[1] != version {
		return m, fmt.Errorf("connpass: %v message of version %d, want %d", m.Kind, b[1], version)
	}
	if b[2]&^flagsKnown != 0 {
		return m, fmt.Errorf("connpass: %v message with unknown flags %#02x", m.Kind, b[2]&^flagsKnown)
	}
	m.OK, m.Returned = b[2]&flagOK != 0, b[2]&flagReturned != 0
	m.ID = binary.LittleEndian.Uint64(b[3:])
	n := int(binary.LittleEndian.Uint16(b[11:]))
	rest := b[headerLen:]
	var strs []string
	for i := range n {
		if len(rest) < 2 {
			return m, fmt.Errorf("connpass: %v message: address %d of %d cut short", m.Kind, i+1, n)
		}
		l := int(binary.LittleEndian.Uint16(rest))
		rest = rest[2:]
		if l > len(rest) {
			return m, fmt.Errorf("connpass: %v message: address %d of %d has %d bytes, %d left", m.Kind, i+1, n, l, len(rest))
		}
		strs = append(strs, string(rest[:l]))
		rest = rest[l:]
	}
	if len(rest) > 0 {
		return m, fmt.Errorf("connpass: %v message: %d bytes after its addresses", m.Kind, len(rest))
	}
	switch m.Kind {
	case KindServe:
		m.Addrs = strs
	case KindHand, KindConn:
		if len(strs) != 1 {
			return m, fmt.Errorf("connpass: %v message with %d addresses, want 1", m.Kind, len(strs))
		}
		m.Addr = strs[0]
	default:
		if len(strs) != 0 {
			return m, fmt.Errorf("connpass: %v message with %d addresses, want none", m.Kind, len(strs))
		}
	}
	if err := m.check(); err != nil {
		return m, err
	}
	return m, nil
}
