package main

import (
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWatchdogWithheldWhileUnhealthy: WATCHDOG=1 is sent after each check
// that passes and never after one that fails, so that systemd restarts a
// tokd that no longer answers on its socket.
func TestWatchdogWithheldWhileUnhealthy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", path)

	var healthy atomic.Bool
	checks := make(chan struct{}, 100)
	n := &systemdNotifier{log: slog.New(slog.DiscardHandler)}
	const period = 2 * time.Millisecond
	var timeouts atomic.Int64
	n.runWatchdog(period, func(timeout time.Duration) error {
		timeouts.Store(int64(timeout))
		// The ping of the previous check, if any, was sent before this
		// call: a datagram is queued by the time send returns.
		select {
		case checks <- struct{}{}:
		default:
		}
		if healthy.Load() {
			return nil
		}
		return errors.New("no answer")
	})
	defer n.stopWatchdog()

	for range 5 {
		<-checks
	}
	// Whatever was sent is queued: look without waiting.
	buf := make([]byte, 256)
	raw, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var queued int
	var recvErr error
	if err := raw.Control(func(fd uintptr) {
		queued, _, recvErr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(recvErr, unix.EAGAIN) {
		t.Fatalf("sent %q (%v) while every check failed, want nothing", buf[:max(queued, 0)], recvErr)
	}

	healthy.Store(true)
	n2, err := ln.Read(buf)
	if err != nil || string(buf[:n2]) != "WATCHDOG=1" {
		t.Fatalf("once healthy: read %q, %v; want WATCHDOG=1", buf[:n2], err)
	}
	// A check that takes its whole timeout still pings within 3/4 of
	// WatchdogSec (2 × period) of the previous ping.
	if got := time.Duration(timeouts.Load()); got != period/2 {
		t.Errorf("check's timeout = %v, want period/2 = %v", got, period/2)
	}
}

// TestWatchdogNotStartedAfterStop: when shutdown began before readiness
// (Stopping before Ready), the watchdog never starts, so that nothing
// pings after STOPPING=1.
func TestWatchdogNotStartedAfterStop(t *testing.T) {
	n := &systemdNotifier{log: slog.New(slog.DiscardHandler)}
	n.stopWatchdog()
	n.runWatchdog(time.Millisecond, func(time.Duration) error {
		t.Error("check ran after stopWatchdog")
		return nil
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopDog != nil {
		t.Error("a watchdog was started after stopWatchdog")
	}
}
