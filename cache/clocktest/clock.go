// Package clocktest provides a fake cache.Clock whose time moves only when
// a test says so, for testing refresh scheduling without sleeping.
package clocktest

import (
	"container/heap"
	"sync"
	"time"

	"github.com/tokd/tokd/cache"
)

// Clock is a fake cache.Clock. Its time starts where New puts it and moves
// only in Advance and AdvanceTo, which run the functions of the timers that
// fall due, in deadline order, on the caller's goroutine, with Now reading
// each timer's deadline while its function runs, and in Step, which sets
// the reading as a wall clock is set, without time passing. Its methods
// are safe for concurrent use.
//
// Pending timers are kept in a min-heap ordered by deadline, then by the
// order they were armed, so that arming, stopping and firing a timer cost
// O(log n): a fleet simulation keeps tens of thousands pending.
type Clock struct {
	mu     sync.Mutex // guards the fields below and every pending Timer's index
	now    time.Time
	seq    uint64
	timers timerHeap
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
	heap.Push(&c.timers, t)
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
		if len(c.timers) == 0 || c.timers[0].when.After(t) {
			c.now = t
			c.mu.Unlock()
			return
		}
		next := heap.Pop(&c.timers).(*Timer)
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
	}
}

// Step moves the reading by d, forward or back, as NTP or an operator
// steps a wall clock: no time passes, so no timer runs, and every pending
// timer keeps the time it has left to wait (its deadline moves by d too),
// as Go's timers run on the monotonic clock.
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.when = t.when.Add(d)
	}
}

// NextDeadline returns the deadline of the earliest pending timer, and
// false when none is pending.
func (c *Clock) NextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].when, true
}

// Pending returns the number of pending timers.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Timer is a pending call armed by Clock.AfterFunc.
type Timer struct {
	c    *Clock
	when time.Time
	seq  uint64
	f    func()
	// index is the timer's position in c.timers, -1 once it has fired or
	// been stopped; guarded by c.mu.
	index int
}

// Stop prevents the call and reports whether it was still pending.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.c.timers, t.index)
	return true
}

// timerHeap is a container/heap of pending timers, earliest deadline first,
// ties in arming order. Each Timer keeps its index, for Stop.
type timerHeap []*Timer

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
