package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/daemon"
)

// activationName is the FileDescriptorName of tokd.socket.
const activationName = "tokd"

// activatedListener returns the socket systemd passed (socket
// activation), or nil when tokd was started without one. A passed socket
// is used as it is: systemd owns its path and mode.
func activatedListener() (net.Listener, error) {
	byName, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	if lns := byName[activationName]; len(lns) > 0 {
		return one(lns)
	}
	var all []net.Listener
	for _, lns := range byName {
		all = append(all, lns...)
	}
	if len(all) == 0 {
		return nil, nil
	}
	return one(all)
}

func one(lns []net.Listener) (net.Listener, error) {
	if len(lns) != 1 {
		return nil, fmt.Errorf("socket activation: %d sockets passed; tokd serves exactly one (FileDescriptorName=%s)", len(lns), activationName)
	}
	if _, ok := lns[0].(*net.UnixListener); !ok {
		return nil, fmt.Errorf("socket activation: the passed socket is %s, not a Unix stream socket", lns[0].Addr().Network())
	}
	return lns[0], nil
}

// systemdNotifier tells systemd about tokd's life through $NOTIFY_SOCKET:
// READY=1 once serving, RELOADING=1 around reloads, STOPPING=1, STATUS=
// lines, and WATCHDOG=1 at half of WatchdogSec while tokd answers on its
// socket. Outside systemd it does nothing.
type systemdNotifier struct {
	log      *slog.Logger
	profiles func() int

	mu         sync.Mutex // guards stopDog and dogStopped
	stopDog    context.CancelFunc
	dogStopped bool // stopWatchdog was called: start no watchdog
}

func (n *systemdNotifier) send(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		n.log.Warn("systemd notification failed", "err", err)
	}
}

// hooks returns the daemon callbacks that notify systemd.
func (n *systemdNotifier) hooks(opts *daemon.Options) {
	opts.Ready = func(socket string) {
		n.send(sddaemon.SdNotifyReady + "\nSTATUS=serving on " + socket)
		n.startWatchdog(func(timeout time.Duration) error {
			_, err := (&client.Client{Socket: socket, Timeout: timeout}).Status()
			return err
		})
	}
	opts.Reloading = func() {
		n.send(sddaemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + monotonicUsec() + "\nSTATUS=reloading the configuration")
	}
	opts.Reloaded = func(err error) {
		status := "STATUS=configuration reloaded"
		if err != nil {
			status = "STATUS=reload refused, previous configuration serving: " + oneLine(err.Error())
		}
		n.send(sddaemon.SdNotifyReady + "\n" + status)
	}
	opts.Stopping = func() {
		n.stopWatchdog()
		n.send(sddaemon.SdNotifyStopping + "\nSTATUS=stopping")
	}
}

// startWatchdog pings systemd at half the WatchdogSec it asked for, each
// time check passes within half that period (so that two pings are never
// further apart than 3/4 of WatchdogSec). check asks tokd for its status over
// its own socket, a round trip through the accept loop, a request's
// handler and the cache's lock: if any of them hangs, the pings stop and
// systemd restarts tokd, which is what the watchdog is for. A ping sent
// by a free-running timer would prove only that one goroutine runs.
func (n *systemdNotifier) startWatchdog(check func(timeout time.Duration) error) {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	n.runWatchdog(interval/2, check)
}

// runWatchdog runs check every period and sends WATCHDOG=1 after each
// check that passes within period/2, until stopWatchdog; after
// stopWatchdog it starts nothing.
func (n *systemdNotifier) runWatchdog(period time.Duration, check func(timeout time.Duration) error) {
	ctx, cancel := context.WithCancel(context.Background())
	n.mu.Lock()
	if n.dogStopped {
		n.mu.Unlock()
		cancel()
		return
	}
	n.stopDog = cancel
	n.mu.Unlock()
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if err := check(period / 2); err == nil {
				n.send(sddaemon.SdNotifyWatchdog)
			} else if ctx.Err() == nil {
				n.log.Error("watchdog: tokd did not answer its own status request; the ping to systemd is withheld", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (n *systemdNotifier) stopWatchdog() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dogStopped = true
	if n.stopDog != nil {
		n.stopDog()
	}
}

func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "0"
	}
	return strconv.FormatInt(ts.Nano()/1000, 10)
}

func oneLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i] + " ..."
		}
	}
	return s
}
