package janitor

import (
	"testing"

	"go.uber.org/goleak"
)

// The janitor these tests start is the test binary itself: this package's init runs it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
