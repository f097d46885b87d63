package supervisor

import (
	"os"
	"syscall"

	"go.uber.org/zap"
)

func (t *table) onSignal(sig os.Signal) {
	t.log.Info("signal", zap.Stringer("signal", sig))
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT:
		t.stopSignals++
		if t.stopSignals == 1 {
			t.requestStop(t.o.stopTimeout) // shutdown.go
		} else {
			t.log.Warn("second stop signal: killing workers")
			t.killAll()
		}
	case syscall.SIGHUP:
		t.requestRoll(nil)
	case sigUpgrade:
		t.requestUpgrade(nil)
	case sigMore:
		t.scale(len(t.slots) + 1)
	case sigFewer:
		t.scale(max(1, len(t.slots)-1))
	}
}
