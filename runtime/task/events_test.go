package task

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// recorder is a shim.Publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	topics []string
	ids    []string
	closed bool
	delay  time.Duration
}

func (r *recorder) Publish(ctx context.Context, topic string, e events.Event) error {
	time.Sleep(r.delay)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	if x, ok := e.(*eventstypes.TaskExit); ok {
		r.ids = append(r.ids, x.ID)
	}
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func TestQueueKeepsOrderAndDrainsOnClose(t *testing.T) {
	rec := &recorder{delay: time.Millisecond}
	q := newQueue(context.Background(), rec)
	const n = 300 // more than the channel holds
	for i := 0; i < n; i++ {
		q.send(&eventstypes.TaskExit{ID: fmt.Sprint(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.close(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ids) != n || !rec.closed {
		t.Fatalf("published %d of %d events, publisher closed %v", len(rec.ids), n, rec.closed)
	}
	for i, id := range rec.ids {
		if id != fmt.Sprint(i) {
			t.Fatalf("event %d published as #%d: order lost", i, len(rec.ids[:i]))
		}
	}
	if rec.topics[0] != "/tasks/exit" {
		t.Errorf("topic %q", rec.topics[0])
	}
	q.send(&eventstypes.TaskExit{ID: "late"}) // dropped, must not block
}

func TestAgentEventsWaitSeen(t *testing.T) {
	e := newAgentEvents()
	e.waitSeen(0) // nothing to wait for

	done := make(chan struct{})
	go func() { e.waitSeen(3); close(done) }()
	for _, seq := range []uint64{1, 2} {
		e.mu.Lock()
		e.seen = seq
		e.cond.Broadcast()
		e.mu.Unlock()
	}
	select {
	case <-done:
		t.Fatal("waitSeen(3) returned with seen = 2")
	default:
	}
	e.mu.Lock()
	e.seen = 3
	e.cond.Broadcast()
	e.mu.Unlock()
	<-done

	// A follower that ended releases every waiter.
	done = make(chan struct{})
	go func() { e.waitSeen(10); close(done) }()
	e.mu.Lock()
	e.done = true
	e.cond.Broadcast()
	e.mu.Unlock()
	<-done
}

// TestTaskEventDropsUnknownContainers: an OOM event the agent reports for a
// container the shim does not hold is dropped; before, every agent event
// became a TaskOOM (this test failed there).
func TestTaskEventDropsUnknownContainers(t *testing.T) {
	known := func(id string) bool { return id == "c1" }
	for _, tc := range []struct {
		ev   *api.Event
		want any
	}{
		{&api.Event{Type: api.Event_OOM, ContainerId: "c1"}, &eventstypes.TaskOOM{ContainerID: "c1"}},
		{&api.Event{Type: api.Event_OOM, ContainerId: "other-pods-container"}, nil},
		{&api.Event{Type: api.Event_OOM, ContainerId: ""}, nil},
	} {
		got := taskEvent(tc.ev, known)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("taskEvent(%v) = %v, want %v", tc.ev, got, tc.want)
		}
	}
}
