package task

import (
	"fmt"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
)

// phase is where a process is in its life, as the shim keeps it.
type phase int

const (
	// phaseCreated: made by Create (the init) or Exec, not started.
	phaseCreated phase = iota
	// phaseStarting: Start has begun, or the sandbox failed before it
	// did; it cannot be started again.
	phaseStarting
	phaseRunning
	// phasePaused: Pause froze it (the init) in the guest.
	phasePaused
	// phaseStopped: it exited, or its start failed.
	phaseStopped
	// phaseDiscarded: it was deleted without ever being started.
	phaseDiscarded
)

func (ph phase) String() string {
	switch ph {
	case phaseCreated:
		return "created"
	case phaseStarting:
		return "starting"
	case phaseRunning:
		return "running"
	case phasePaused:
		return "paused"
	case phaseStopped:
		return "stopped"
	case phaseDiscarded:
		return "deleted"
	}
	return fmt.Sprintf("phase(%d)", int(ph))
}

// procState is a process's phase with its pid and exit, and the moves
// between phases:
//
//	created  --start-->   starting --run-->    running <--resume-- paused
//	created  --discard--> discarded            running --pause-->  paused
//	starting, running, paused --exit--> stopped
//
// A move from any other phase is an error (errdefs.ErrFailedPrecondition)
// and changes nothing. procState does no locking: process guards it.
type procState struct {
	phase      phase
	pid        uint32
	exitStatus uint32
	exitedAt   time.Time
}

// status is the phase as the task API names it.
func (st procState) status() task.Status {
	switch st.phase {
	case phaseCreated, phaseStarting:
		return task.Status_CREATED
	case phaseRunning:
		return task.Status_RUNNING
	case phasePaused:
		return task.Status_PAUSED
	case phaseStopped, phaseDiscarded:
		return task.Status_STOPPED
	}
	return task.Status_UNKNOWN
}

// started says whether Start has begun for the process (or the sandbox
// failed before it did): its exit is then the agent's, or a failed start's.
func (st procState) started() bool {
	switch st.phase {
	case phaseStarting, phaseRunning, phasePaused, phaseStopped:
		return true
	}
	return false
}

// move goes to phase to if the process is in one of the phases from.
func (st *procState) move(verb string, to phase, from ...phase) error {
	for _, ph := range from {
		if st.phase == ph {
			st.phase = to
			return nil
		}
	}
	return fmt.Errorf("cannot %s a process that is %s: %w", verb, st.phase, errdefs.ErrFailedPrecondition)
}

// start marks a created process as being started: Start refuses it from
// then on.
func (st *procState) start() error {
	if st.started() {
		return fmt.Errorf("already started: %w", errdefs.ErrFailedPrecondition)
	}
	return st.move("start", phaseStarting, phaseCreated)
}

// run records that the agent started the process as pid.
func (st *procState) run(pid uint32) error {
	if err := st.move("run", phaseRunning, phaseStarting); err != nil {
		return err
	}
	st.pid = pid
	return nil
}

func (st *procState) pause() error { return st.move("pause", phasePaused, phaseRunning) }

func (st *procState) resume() error { return st.move("resume", phaseRunning, phasePaused) }

// exit records the exit of a started process, or of one whose start
// failed.
func (st *procState) exit(status uint32, at time.Time) error {
	if err := st.move("exit", phaseStopped, phaseStarting, phaseRunning, phasePaused); err != nil {
		return err
	}
	st.exitStatus, st.exitedAt = status, at
	return nil
}

// discard stops a process that was never started, at its deletion. A
// process already discarded stays as it is (a Delete that is tried again).
func (st *procState) discard(at time.Time) error {
	if st.phase == phaseDiscarded {
		return nil
	}
	if err := st.move("delete", phaseDiscarded, phaseCreated); err != nil {
		return err
	}
	st.exitedAt = at
	return nil
}
