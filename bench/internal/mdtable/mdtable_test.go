package mdtable

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWrite(t *testing.T) {
	tb := New("server", "req/s", "note").Right(1)
	tb.Row("handoff", Rate(12345.6), "a|b").Row("nginx", Rate(7), "two\nlines")
	got := tb.String()
	want := "" +
		"| server  |    req/s | note      |\n" +
		"| ------- | -------: | --------- |\n" +
		"| handoff | 12,346/s | a\\|b      |\n" +
		"| nginx   |      7/s | two lines |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if tb.Len() != 2 {
		t.Errorf("Len() = %d", tb.Len())
	}
}

func TestWriteErrors(t *testing.T) {
	var b strings.Builder
	if err := New("a", "b").Row("only one").Write(&b); !errors.Is(err, ErrShape) || b.Len() != 0 {
		t.Errorf("short row: %v, wrote %q", err, b.String())
	}
	if err := New("a").Right(1).Write(&b); err == nil || !strings.Contains(err.Error(), "column 1") {
		t.Errorf("Right(1) of one column: %v", err)
	}
	if err := New().Write(&b); err == nil {
		t.Error("a table without columns was written")
	}
	if s := New("a", "b").Row("x").String(); !strings.HasPrefix(s, "mdtable: ") {
		t.Errorf("String() of a bad table = %q", s)
	}
}

func TestNumbers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Ms(1250 * time.Microsecond), "1.25 ms"},
		{Ms(0), "0.00 ms"},
		{Ms(-1), "–"},
		{Int(0), "0"},
		{Int(999), "999"},
		{Int(1000), "1,000"},
		{Int(-1234567), "-1,234,567"},
		{Rate(999.5), "1,000/s"},
		{Rate(math.NaN()), "–"},
		{Ratio(5, 2), "×2.50"},
		{Ratio(0, 0), "×1.00"},
		{Ratio(3, 0), "∞"},
		{Ratio(-1, 2), "–"},
		{Ratio(math.NaN(), 1), "–"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
