package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"go.uber.org/zap"
)

// writePidfile writes this process's pid to path, replacing the file
// atomically. A pid file that names another live process is replaced with a
// warning: it may be a reused pid, and the control socket is what refuses to
// start a second handoff in the same place.
func writePidfile(path string, log *zap.Logger) error {
	pid := os.Getpid()
	if old, err := readPidfile(path); err == nil && old != pid && processAlive(old) {
		log.Warn("the pid file names another live process; replacing it", zap.String("pidfile", path), zap.Int("pid", old))
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", pid)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// readPidfile returns the pid in the pid file at path.
func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if len(b) > 32 {
		b = b[:32]
	}
	s := string(bytes.TrimSpace(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid < 1 {
		return 0, fmt.Errorf("pid file %s holds %s, not a pid", path, quoteShort(s))
	}
	return pid, nil
}

// removePidfile removes the pid file if it still names this process.
func removePidfile(path string, log *zap.Logger) {
	if pid, err := readPidfile(path); err != nil || pid != os.Getpid() {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("removing the pid file", zap.Error(err))
	}
}
