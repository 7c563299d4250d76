package cache

import "time"

// Clock is the cache's source of time. The cache reads the time and arms
// timers only through its Clock, so tests drive refresh scheduling with a
// fake clock (package clocktest) instead of sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine, or on any goroutine that is
	// not holding the cache's lock, once d has elapsed. The cache never
	// passes d <= 0.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call armed by Clock.AfterFunc. *time.Timer
// implements it.
type Timer interface {
	// Stop prevents the call from happening and reports whether it did so
	// (false if the call already happened or was stopped).
	Stop() bool
}

// systemClock is the Clock of the time package.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
