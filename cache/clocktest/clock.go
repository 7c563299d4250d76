// Package clocktest provides a fake cache.Clock whose time moves only when
// a test says so, for testing refresh scheduling without sleeping.
package clocktest

import (
	"slices"
	"sync"
	"time"

	"github.com/tokd/tokd/cache"
)

// Clock is a fake cache.Clock. Its time starts where New puts it and moves
// only in Advance and AdvanceTo, which run the functions of the timers that
// fall due, in deadline order, on the caller's goroutine, with Now reading
// each timer's deadline while its function runs. Its methods are safe for
// concurrent use.
type Clock struct {
	mu     sync.Mutex // guards the fields below
	now    time.Time
	seq    uint64
	timers []*Timer // pending timers, unordered
}

var _ cache.Clock = (*Clock)(nil)

// New returns a Clock reading now.
func New(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arms a timer that calls f once the clock has advanced by d. A
// timer with d <= 0 falls due at the next Advance or AdvanceTo, even by 0.
func (c *Clock) AfterFunc(d time.Duration, f func()) cache.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &Timer{c: c, when: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock forward by d, running the timers that fall due.
func (c *Clock) Advance(d time.Duration) {
	c.AdvanceTo(c.Now().Add(d))
}

// AdvanceTo moves the clock forward to t, running the timers that fall due
// on the way: earliest deadline first, ties in the order they were armed.
// Timers armed by those functions run too if they fall due by t. The clock
// never moves backwards: a t before Now only runs the timers already due.
func (c *Clock) AdvanceTo(t time.Time) {
	for {
		c.mu.Lock()
		if c.now.After(t) {
			t = c.now
		}
		next := c.nextLocked()
		if next == nil || next.when.After(t) {
			c.now = t
			c.mu.Unlock()
			return
		}
		c.removeLocked(next)
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
	}
}

// NextDeadline returns the deadline of the earliest pending timer, and
// false when none is pending.
func (c *Clock) NextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if next := c.nextLocked(); next != nil {
		return next.when, true
	}
	return time.Time{}, false
}

// Pending returns the number of pending timers.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *Clock) nextLocked() *Timer {
	var next *Timer
	for _, t := range c.timers {
		if next == nil || t.when.Before(next.when) || (t.when.Equal(next.when) && t.seq < next.seq) {
			next = t
		}
	}
	return next
}

// removeLocked removes t from the pending timers and reports whether it
// was pending.
func (c *Clock) removeLocked(t *Timer) bool {
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}

// Timer is a pending call armed by Clock.AfterFunc.
type Timer struct {
	c    *Clock
	when time.Time
	seq  uint64
	f    func()
}

// Stop prevents the call and reports whether it was still pending.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.removeLocked(t)
}
