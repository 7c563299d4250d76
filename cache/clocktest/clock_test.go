package clocktest

import (
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
