package task

import (
	"context"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"

	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/agent/api"
)

// queue is the shim's one event queue with its one forwarder: events reach
// containerd in the order they were sent.
type queue struct {
	events    chan any
	stop      chan struct{}
	stopOnce  sync.Once
	finished  chan struct{}
	publisher shim.Publisher
}

// newQueue starts the forwarder; ctx carries the shim's namespace, which
// the publisher needs.
func newQueue(ctx context.Context, publisher shim.Publisher) *queue {
	q := &queue{events: make(chan any, 128), stop: make(chan struct{}), finished: make(chan struct{}), publisher: publisher}
	go q.forward(context.WithoutCancel(ctx))
	return q
}

// send queues an event; after close it drops it.
func (q *queue) send(e any) {
	select {
	case q.events <- e:
	case <-q.finished:
		log.L.WithField("topic", runtime.GetTopic(e)).Warn("event dropped: the shim is shutting down")
	}
}

func (q *queue) forward(ctx context.Context) {
	defer close(q.finished)
	defer q.publisher.Close()
	publish := func(e any) {
		if err := q.publisher.Publish(ctx, runtime.GetTopic(e), e); err != nil {
			log.G(ctx).WithError(err).WithField("topic", runtime.GetTopic(e)).Error("publish event")
		}
	}
	for {
		select {
		case e := <-q.events:
			publish(e)
		case <-q.stop:
			for {
				select {
				case e := <-q.events:
					publish(e)
				default:
					return
				}
			}
		}
	}
}

// close publishes what is queued and closes the publisher, waiting at most
// until ctx ends.
func (q *queue) close(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	select {
	case <-q.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// agentEvents follows the agent's event log (OOM kills) and turns it into
// TaskOOM events; seen lets exits wait for the events that preceded them.
type agentEvents struct {
	mu   sync.Mutex
	cond *sync.Cond
	seen uint64
	done bool
}

func newAgentEvents() *agentEvents {
	e := &agentEvents{}
	e.cond = sync.NewCond(&e.mu)
	return e
}

// follow long-polls the agent until ctx ends or the agent is gone. known
// tells the containers the shim holds: the agent is the guest's, so an event
// it reports for another ID is dropped (a compromised guest must not make
// containerd believe things of tasks that are not in this sandbox).
func (e *agentEvents) follow(ctx context.Context, c *agent.Client, q *queue, known func(id string) bool) {
	defer func() {
		e.mu.Lock()
		e.done = true
		e.cond.Broadcast()
		e.mu.Unlock()
	}()
	var after uint64
	for {
		ev, err := c.NextEvent(ctx, after)
		if err != nil {
			if ctx.Err() == nil {
				log.G(ctx).WithError(err).Debug("agent events ended")
			}
			return
		}
		if te := taskEvent(ev, known); te != nil {
			q.send(te)
		} else if ev.Type == api.Event_OOM {
			log.G(ctx).WithField("id", ev.ContainerId).Warn("dropping an OOM event the guest agent reported for a container this sandbox does not hold")
		}
		after = ev.Seq
		e.mu.Lock()
		e.seen = after
		e.cond.Broadcast()
		e.mu.Unlock()
	}
}

// taskEvent is the containerd event for an agent event, or nil: the agent
// reports OOM kills, and only those of containers the shim holds count.
func taskEvent(ev *api.Event, known func(id string) bool) any {
	if ev.Type == api.Event_OOM && known(ev.ContainerId) {
		return &eventstypes.TaskOOM{ContainerID: ev.ContainerId}
	}
	return nil
}

// waitSeen returns once the events up to seq have been queued (or the agent
// is gone, or a minute has passed).
func (e *agentEvents) waitSeen(seq uint64) {
	if seq == 0 {
		return
	}
	timedOut := false
	timer := time.AfterFunc(time.Minute, func() {
		e.mu.Lock()
		timedOut = true
		e.cond.Broadcast()
		e.mu.Unlock()
	})
	defer timer.Stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.seen < seq && !e.done && !timedOut {
		e.cond.Wait()
	}
}
