package acceptq

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/handoff-dev/handoff/listener"
)

// Accepted reports whether one of the processes pids holds a connection accepted on one of
// socks: a socket of theirs (/proc/PID/fd) that the kernel lists as a connection of a TCP
// socket's port (/proc/PID/net/tcp, tcp6) or of a unix socket's path (/proc/PID/net/unix),
// in the first process's network namespace. It tells a server that serves but never said so
// (no READY=1) from one that never accepts.
func Accepted(pids []int, socks []*listener.Socket) (bool, error) {
	if len(pids) == 0 {
		return false, nil
	}
	inodes := map[string]bool{}
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, e := range ents {
			link, err := os.Readlink(dir + "/" + e.Name())
			if ino, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	ports, paths := map[string]bool{}, map[string]bool{}
	for _, s := range socks {
		switch a := s.Addr().(type) {
		case *net.TCPAddr:
			ports[fmt.Sprintf("%04X", a.Port)] = true
		case *net.UnixAddr:
			paths[a.Name] = true
		}
	}
	for _, table := range []string{"tcp", "tcp6"} {
		found, err := scanNet(fmt.Sprintf("/proc/%d/net/%s", pids[0], table), func(f []string) bool {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] == "0A" { // 0A: listening
				return false
			}
			_, port, _ := strings.Cut(f[1], ":")
			return ports[port] && inodes[f[9]]
		})
		if found || err != nil {
			return found, err
		}
	}
	return scanNet(fmt.Sprintf("/proc/%d/net/unix", pids[0]), func(f []string) bool {
		// Num RefCount Protocol Flags Type St Inode Path; St 03: connected
		return len(f) >= 8 && f[5] == "03" && paths[f[7]] && inodes[f[6]]
	})
}

// scanNet reports whether a line of the /proc/net table at path, split into fields, matches.
func scanNet(path string, match func([]string) bool) (bool, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil // no IPv6, say
	}
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // the header
	for sc.Scan() {
		if match(strings.Fields(sc.Text())) {
			return true, nil
		}
	}
	return false, sc.Err()
}
