// Package mdtable renders Markdown (GitHub-flavoured) tables and the
// numbers that go in them: durations in milliseconds, rates, and ratios
// that say which way they point.
package mdtable

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Align is a column's alignment.
type Align uint8

const (
	// Left aligns text; the default.
	Left Align = iota
	// Right aligns numbers.
	Right
)

// ErrShape is returned when a row's cell count differs from the header's.
var ErrShape = errors.New("mdtable: row and header differ in length")

// Table is a header, the columns' alignments and rows of cells. The zero
// value is not usable: make one with New.
type Table struct {
	header []string
	align  []Align
	rows   [][]string
	err    error
}

// New returns a table with the given header; every column is left aligned.
func New(header ...string) *Table {
	return &Table{header: header, align: make([]Align, len(header))}
}

// Right right-aligns the columns at the given indexes (0-based); indexes
// out of range are an error reported by Write.
func (t *Table) Right(cols ...int) *Table {
	for _, c := range cols {
		if c < 0 || c >= len(t.align) {
			t.err = errors.Join(t.err, fmt.Errorf("mdtable: column %d out of range [0, %d)", c, len(t.align)))
			continue
		}
		t.align[c] = Right
	}
	return t
}

// Row appends a row; a row of the wrong length is an error reported by
// Write.
func (t *Table) Row(cells ...string) *Table {
	if len(cells) != len(t.header) {
		t.err = errors.Join(t.err, fmt.Errorf("%w: %d cells, %d columns: %q", ErrShape, len(cells), len(t.header), cells))
		return t
	}
	t.rows = append(t.rows, cells)
	return t
}

// Len returns the number of rows.
func (t *Table) Len() int { return len(t.rows) }

// Write renders the table, columns padded to line up in plain text too.
// It writes nothing if a Row or Right call was wrong, and returns why.
func (t *Table) Write(w io.Writer) error {
	if t.err != nil {
		return t.err
	}
	if len(t.header) == 0 {
		return errors.New("mdtable: a table needs at least one column")
	}
	cells := make([][]string, 0, len(t.rows)+1)
	for _, r := range append([][]string{t.header}, t.rows...) {
		esc := make([]string, len(r))
		for i, c := range r {
			esc[i] = Escape(c)
		}
		cells = append(cells, esc)
	}
	width := make([]int, len(t.header))
	for _, r := range cells {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)), 3)
		}
	}
	var b strings.Builder
	line := func(r []string) {
		b.WriteString("|")
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if t.align[i] == Right {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		b.WriteString("\n")
	}
	line(cells[0])
	b.WriteString("|")
	for i, wd := range width {
		if t.align[i] == Right {
			b.WriteString(" " + strings.Repeat("-", wd-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", wd) + " |")
		}
	}
	b.WriteString("\n")
	for _, r := range cells[1:] {
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String renders the table, or the error that prevents it.
func (t *Table) String() string {
	var b strings.Builder
	if err := t.Write(&b); err != nil {
		return "mdtable: " + err.Error()
	}
	return b.String()
}

// Escape makes s safe inside a cell: pipes are escaped and line breaks
// become spaces.
func Escape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// Ms formats a duration in milliseconds with two decimals ("1.25 ms"),
// or "–" for a negative one (no data).
func Ms(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// Int formats n with thin separators of thousands ("12,345").
func Int(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Rate formats a per-second figure without decimals ("12,345/s"), or
// "–" when it is not a number.
func Rate(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return Int(int(math.Round(r))) + "/s"
}

// Ratio formats a/b as "×2.50". With b zero it is "×1.00" when a is zero
// too, "∞" otherwise; negative or NaN inputs give "–".
func Ratio(a, b float64) string {
	switch {
	case math.IsNaN(a) || math.IsNaN(b) || a < 0 || b < 0:
		return "–"
	case b == 0 && a == 0:
		return "×1.00"
	case b == 0:
		return "∞"
	}
	return fmt.Sprintf("×%.2f", a/b)
}
