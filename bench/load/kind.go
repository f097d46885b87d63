package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Kind is how a request ended: OK or one kind of failure.
type Kind uint8

const (
	// OK is a complete response with status 200.
	OK Kind = iota
	// Refused is a dial that got ECONNREFUSED: nothing listened.
	Refused
	// Reset is ECONNRESET or EPIPE while writing or reading.
	Reset
	// EOFBeforeResponse is a connection that ended cleanly before any byte
	// of the response: on a reused connection, the keep-alive close race.
	EOFBeforeResponse
	// EOFMidResponse is a connection that ended inside the response.
	EOFMidResponse
	// Timeout is a request (dial included) that ran out of time.
	Timeout
	// Non200 is a complete response with a status other than 200.
	Non200
	// Other is any other error, such as a malformed response.
	Other
)

// NumKinds is the number of kinds, OK included: the length of
// Stats.ByKind.
const NumKinds = int(Other) + 1

var kindNames = [NumKinds]string{
	OK:                "ok",
	Refused:           "refused",
	Reset:             "reset",
	EOFBeforeResponse: "EOF before any response byte",
	EOFMidResponse:    "EOF mid-response",
	Timeout:           "timeout",
	Non200:            "non-200",
	Other:             "other",
}

// String names the kind as a table row would.
func (k Kind) String() string {
	if int(k) < NumKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// FailureKinds returns every kind except OK, in declaration order.
func FailureKinds() []Kind {
	return []Kind{Refused, Reset, EOFBeforeResponse, EOFMidResponse, Timeout, Non200, Other}
}

// errProtocol marks a response the raw client could not parse.
var errProtocol = errors.New("malformed HTTP response")

// classify maps a request's error to its kind; gotByte says whether any
// byte of the response had arrived.
func classify(err error, gotByte bool) Kind {
	var ne net.Error
	switch {
	case err == nil:
		return OK
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if gotByte {
			return EOFMidResponse
		}
		return EOFBeforeResponse
	}
	return Other
}
