//go:build !linux

package supervisor

import "os"

// openExe pins nothing: a generation runs its program by path.
func openExe(string) (*os.File, bool) { return nil, false }

// isSelf: the running binary is not known.
func isSelf(*os.File) bool { return false }

// exeAbove is never called: nothing is pinned.
func exeAbove(*os.File, int) (string, func(), error) { return "", nil, os.ErrInvalid }
