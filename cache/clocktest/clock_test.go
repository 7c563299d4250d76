package clocktest

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestAdvanceRunsDueTimersInOrder(t *testing.T) {
	c := New(start)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(start).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(1*time.Second, at("a"))
	c.AfterFunc(1*time.Second, at("b")) // same deadline: armed after a
	stopped := c.AfterFunc(2*time.Second, at("stopped"))
	c.AfterFunc(10*time.Second, at("later"))
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer = false")
	}
	if stopped.Stop() {
		t.Fatal("second Stop = true")
	}
	// A timer armed by a timer function runs within the same Advance.
	c.AfterFunc(4*time.Second, func() { c.AfterFunc(time.Second, at("chained")) })

	c.Advance(5 * time.Second)
	want := []string{"a@1s", "b@1s", "c@3s", "chained@5s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("timers run (-want +got):\n%s", diff)
	}
	if now := c.Now(); !now.Equal(start.Add(5 * time.Second)) {
		t.Errorf("Now = %v, want start+5s", now)
	}
	if next, ok := c.NextDeadline(); !ok || !next.Equal(start.Add(10*time.Second)) {
		t.Errorf("NextDeadline = %v, %v; want start+10s, true", next, ok)
	}
	if n := c.Pending(); n != 1 {
		t.Errorf("Pending = %d, want 1", n)
	}
}

func TestAdvanceToThePastKeepsTime(t *testing.T) {
	c := New(start)
	ran := false
	c.AfterFunc(0, func() { ran = true })
	c.AdvanceTo(start.Add(-time.Hour))
	if !ran {
		t.Error("a timer due now did not run")
	}
	if !c.Now().Equal(start) {
		t.Errorf("Now = %v, want %v", c.Now(), start)
	}
}

// TestManyTimersRunInOrder arms, stops and fires thousands of timers in a
// seeded random pattern, with many equal deadlines, and checks every step
// against the rule: earliest deadline first, ties in arming order, stopped
// timers never, and Stop true only for a pending timer.
func TestManyTimersRunInOrder(t *testing.T) {
	c := New(start)
	rng := rand.New(rand.NewPCG(1, 2))
	type armed struct {
		when time.Time
		id   int
	}
	var (
		got     []int
		pending = map[int]armed{}
		timers  = map[int]*Timer{}
		lastID  int
		arm     func(d time.Duration)
	)
	arm = func(d time.Duration) {
		lastID++
		id := lastID
		pending[id] = armed{when: c.Now().Add(d), id: id}
		timers[id] = c.AfterFunc(d, func() {
			got = append(got, id)
			delete(pending, id)
			// A timer function sometimes arms another timer, as a cache does
			// when it schedules its next refresh. At least 2 s ahead, it
			// never falls due in the 1 s step that armed it.
			if rng.IntN(4) == 0 {
				arm(time.Duration(2+rng.IntN(20)) * time.Second)
			}
		}).(*Timer)
	}
	for range 5000 {
		arm(time.Duration(rng.IntN(60)) * time.Second)
	}
	for id := 1; id <= 5000; id += 3 {
		if !timers[id].Stop() {
			t.Fatalf("Stop of pending timer %d = false", id)
		}
		delete(pending, id)
	}
	for step := range 90 {
		due := c.Now().Add(time.Second)
		var want []int
		var order []armed
		for _, a := range pending {
			if !a.when.After(due) {
				order = append(order, a)
			}
		}
		slices.SortFunc(order, func(a, b armed) int {
			if c := a.when.Compare(b.when); c != 0 {
				return c
			}
			return a.id - b.id
		})
		for _, a := range order {
			want = append(want, a.id)
		}
		got = nil
		c.AdvanceTo(due)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d: timers run (-want +got):\n%s", step, diff)
		}
		if n := c.Pending(); n != len(pending) {
			t.Fatalf("step %d: Pending = %d, want %d", step, n, len(pending))
		}
	}
	for id, tm := range timers {
		if _, ok := pending[id]; tm.Stop() != ok {
			t.Errorf("Stop of timer %d = %v, want %v (pending)", id, !ok, ok)
		}
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("Pending after stopping every timer = %d, want 0", n)
	}
}

func TestStepKeepsTheTimeLeft(t *testing.T) {
	c := New(start)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(start).String()) }
	}
	c.AfterFunc(time.Hour, at("a"))
	c.AfterFunc(2*time.Hour, at("b"))
	c.Step(-90 * time.Minute) // no timer runs, none moves closer
	if len(got) != 0 {
		t.Fatalf("Step ran timers: %v", got)
	}
	if now := c.Now(); !now.Equal(start.Add(-90 * time.Minute)) {
		t.Fatalf("Now after stepping back 90m = %v, want start-90m", now)
	}
	c.Advance(59 * time.Minute)
	if len(got) != 0 {
		t.Fatalf("a timer ran before its time had passed: %v", got)
	}
	c.Step(3 * time.Hour) // forward past both deadlines: still none runs
	if len(got) != 0 {
		t.Fatalf("a step forward ran timers: %v", got)
	}
	c.Advance(time.Minute)
	c.Advance(time.Hour)
	want := []string{"a@2h30m0s", "b@3h30m0s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("timers run (-want +got):\n%s", diff)
	}
}
