package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketMode is the mode of tokd's socket. Anyone may connect: every
// request is authorised by the caller's SO_PEERCRED against the profile's
// allowed_uids and allowed_gids, as SPIRE's agent does.
const SocketMode = 0o666

// socketDirMode is the mode of a socket directory tokd creates: not
// writable by others, so nobody else can replace the socket.
const socketDirMode = 0o755

// listenUnix binds path. A socket file left behind by a dead tokd is
// removed, but only after a dial shows that nothing answers there: if
// something does, listenUnix fails with "address already in use".
func listenUnix(path string) (*net.UnixListener, error) {
	if len(path) >= 108 {
		return nil, fmt.Errorf("socket path %s is %d bytes; the limit is 107", path, len(path))
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, socketDirMode); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o002 != 0 {
		return nil, fmt.Errorf("socket directory %s is writable by others (mode %04o): refusing to serve tokens there", dir, fi.Mode().Perm())
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen on %s: a file that is not a socket is in the way", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: address already in use (another tokd is serving there)", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listen on %s: cannot tell whether the existing socket is in use: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	// The process umask makes the new socket at most as open as
	// SocketMode; the mode is then set explicitly.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}
