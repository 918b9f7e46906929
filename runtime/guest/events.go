package guest

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

const eventsKept = 1024

// eventLog numbers events and keeps the last eventsKept for NextEvent.
type eventLog struct {
	mu      sync.Mutex
	seq     uint64
	ring    []*api.Event
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) add(typ api.Event_Type, containerID string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.ring = append(l.ring, &api.Event{Seq: l.seq, Type: typ, ContainerId: containerID, Timestamp: timestamppb.New(time.Now())})
	if len(l.ring) > eventsKept {
		l.ring = l.ring[len(l.ring)-eventsKept:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return l.seq
}

func (l *eventLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// next returns the first event with Seq > after, waiting for one.
func (l *eventLog) next(ctx context.Context, after uint64) (*api.Event, error) {
	for {
		l.mu.Lock()
		for _, e := range l.ring {
			if e.Seq > after {
				l.mu.Unlock()
				return e, nil
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}
