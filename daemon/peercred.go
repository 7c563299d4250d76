package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerCred identifies the process at the other end of a socket
// connection, as the kernel reports it (SO_PEERCRED).
type PeerCred struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups at connect (SO_PEERGROUPS)
}

type peerCredKey struct{}

// withPeerCred is the http.Server ConnContext hook: it reads the peer's
// credentials once per connection. A connection whose credentials cannot
// be read gets none, and every request on it is refused.
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	cred, err := readPeerCred(c)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, peerCredKey{}, cred)
}

// peerCredFrom returns the credentials of the request's connection.
func peerCredFrom(ctx context.Context) (*PeerCred, bool) {
	cred, ok := ctx.Value(peerCredKey{}).(*PeerCred)
	return cred, ok
}

func readPeerCred(c net.Conn) (*PeerCred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("peer credentials: not a Unix socket (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var ucred *unix.Ucred
	var groups []uint32
	var credErr, groupsErr error
	if err := raw.Control(func(fd uintptr) {
		ucred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		groups, groupsErr = peerGroups(int(fd))
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	cred := &PeerCred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid, Groups: groups}
	if groupsErr != nil {
		// Kernels before 4.13 lack SO_PEERGROUPS: read them from /proc,
		// which races with the caller's exit and pid reuse.
		cred.Groups, _ = procGroups(ucred.Pid)
	}
	return cred, nil
}

// peerGroups returns the supplementary groups the peer had when it
// connected (SO_PEERGROUPS, Linux 4.13+).
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 32)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == unix.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
		case errno != 0:
			return nil, errno
		default:
			return buf[:size/4], nil
		}
	}
}

// procGroups reads the supplementary groups of pid from /proc, where
// SO_PEERGROUPS is missing; a process that exits first simply has none.
func procGroups(pid int32) ([]uint32, error) {
	if pid <= 0 {
		return nil, errors.New("no pid")
	}
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var groups []uint32
		for _, g := range strings.Fields(rest) {
			n, err := strconv.ParseUint(g, 10, 32)
			if err == nil {
				groups = append(groups, uint32(n))
			}
		}
		return groups, nil
	}
	return nil, sc.Err()
}
