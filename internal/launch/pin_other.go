//go:build !linux

package launch

import "os"

// OpenExe pins nothing: a generation runs its program by path.
func OpenExe(string) (*os.File, bool) { return nil, false }

// IsSelf: the running binary is not known.
func IsSelf(*os.File) bool { return false }

// exeAbove is never called: nothing is pinned.
func exeAbove(*os.File, int) (string, func(), error) { return "", nil, os.ErrInvalid }
