package guest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

func TestEventLog(t *testing.T) {
	l := newEventLog()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	got := make(chan *api.Event, 1)
	go func() {
		e, err := l.next(ctx, 0)
		if err != nil {
			t.Errorf("next: %v", err)
		}
		got <- e
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	if seq := l.add(api.Event_OOM, "c1"); seq != 1 {
		t.Fatalf("first event: seq %d, want 1", seq)
	}
	if e := <-got; e == nil || e.Seq != 1 || e.Type != api.Event_OOM || e.ContainerId != "c1" {
		t.Fatalf("next(0) = %v; want the OOM of c1, seq 1", e)
	}
	for i := 2; i <= eventsKept+10; i++ {
		l.add(api.Event_OOM, "c2")
	}
	if l.last() != eventsKept+10 {
		t.Errorf("last = %d, want %d", l.last(), eventsKept+10)
	}
	// The oldest are gone: asking from before them gives the oldest kept.
	if e, err := l.next(ctx, 0); err != nil || e.Seq != 11 {
		t.Errorf("next(0) = %v, %v; want seq 11, the oldest kept", e, err)
	}
	if e, err := l.next(ctx, 500); err != nil || e.Seq != 501 {
		t.Errorf("next(500) = %v, %v; want seq 501", e, err)
	}
	short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
	defer stop()
	if _, err := l.next(short, l.last()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("next(last) with nothing new: %v; want the context's deadline", err)
	}
}
