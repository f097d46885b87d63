package listener

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv names the helper a re-executed test binary runs instead of the tests.
const helperEnv = "HANDOFF_TEST_HELPER"

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name))
	}
	recordInheritedFds()
	goleak.VerifyTestMain(m)
}
