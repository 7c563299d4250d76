package daemon

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerCred identifies the process at the other end of a socket
// connection, as the kernel reports it (SO_PEERCRED).
type PeerCred struct {
	PID int32
	UID uint32
	GID uint32
	// Groups are the supplementary groups the peer had when it connected
	// (SO_PEERGROUPS). A connection's are read on first need, through
	// supplementaryGroups: only a profile with allowed_gids that neither
	// the uid nor the primary gid satisfies needs them, and the system
	// call is one of the few a connection costs.
	Groups []uint32

	groupsOnce sync.Once
	readGroups func() []uint32 // reads Groups; nil when Groups is complete
}

// supplementaryGroups returns Groups, reading them the first time.
func (c *PeerCred) supplementaryGroups() []uint32 {
	if c.readGroups != nil {
		c.groupsOnce.Do(func() { c.Groups = c.readGroups() })
	}
	return c.Groups
}

type peerCredKey struct{}

// withPeerCred reads the peer's credentials, once per connection, into
// the connection's context. A connection whose credentials cannot be read
// gets none, and every request on it is refused.
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

// readPeerCred reads SO_PEERCRED now and leaves SO_PEERGROUPS for when
// the groups are needed: the kernel keeps what both were at connect for
// as long as the connection is open.
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
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		ucred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}

	return &PeerCred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid, readGroups: func() []uint32 {
		return connGroups(raw)
	}}, nil
}

// connGroups reads the supplementary groups of a connection's peer. Once
// the connection is closed there is no request left to authorise, and it
// returns none.
func connGroups(raw syscall.RawConn) []uint32 {
	var groups []uint32
	var groupsErr error
	if err := raw.Control(func(fd uintptr) { groups, groupsErr = peerGroups(int(fd)) }); err != nil {
		return nil
	}
	if groupsErr != nil {
		// Kernels before 4.13 lack SO_PEERGROUPS. Reading the groups from
		// /proc/PID/status instead would race with the caller's exit and
		// the reuse of its pid, more so since the groups are read at the
		// first request that needs them, not at connect: access through
		// supplementary groups then fails closed, and allowed_gids matches
		// the primary group only.
		return nil
	}
	return groups
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
