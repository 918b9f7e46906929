package task

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
)

var (
	exitAt    = time.Unix(1700000000, 0)
	discardAt = time.Unix(1700000100, 0)
)

// The moves a process's state is given, by name.
var moves = map[string]func(*procState) error{
	"start":   (*procState).start,
	"run":     func(st *procState) error { return st.run(42) },
	"pause":   (*procState).pause,
	"resume":  (*procState).resume,
	"exit":    func(st *procState) error { return st.exit(137, exitAt) },
	"discard": func(st *procState) error { return st.discard(discardAt) },
}

// verbs are how a refused move's error names it.
var verbs = map[string]string{"start": "start", "run": "run", "pause": "pause", "resume": "resume", "exit": "exit", "discard": "delete"}

// Every phase × every move: the phase it leads to, or an error
// (FailedPrecondition) that leaves the state as it was.
func TestProcStateMoves(t *testing.T) {
	const refused = phase(-1)
	all := []phase{phaseCreated, phaseStarting, phaseRunning, phasePaused, phaseStopped, phaseDiscarded}
	want := map[phase]map[string]phase{
		phaseCreated:   {"start": phaseStarting, "discard": phaseDiscarded},
		phaseStarting:  {"run": phaseRunning, "exit": phaseStopped},
		phaseRunning:   {"pause": phasePaused, "exit": phaseStopped},
		phasePaused:    {"resume": phaseRunning, "exit": phaseStopped},
		phaseStopped:   {},
		phaseDiscarded: {"discard": phaseDiscarded}, // a Delete tried again
	}
	for _, from := range all {
		for name, move := range moves {
			to, ok := want[from][name]
			if !ok {
				to = refused
			}
			t.Run(from.String()+"/"+name, func(t *testing.T) {
				before := procState{phase: from, pid: 7, exitStatus: 3, exitedAt: time.Unix(1600000000, 0)}
				st := before
				err := move(&st)
				if to == refused {
					if !errdefs.IsFailedPrecondition(err) {
						t.Fatalf("%s from %s: %v, want FailedPrecondition", name, from, err)
					}
					if verb := verbs[name]; !strings.Contains(err.Error(), verb) && !strings.Contains(err.Error(), "already started") {
						t.Errorf("the error does not name the move: %v", err)
					}
					if st != before {
						t.Errorf("a refused move changed the state: %+v, was %+v", st, before)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s from %s: %v, want %s", name, from, err, to)
				}
				if st.phase != to {
					t.Errorf("%s from %s: %s, want %s", name, from, st.phase, to)
				}
			})
		}
	}
}

// What a move records beside the phase.
func TestProcStateRecords(t *testing.T) {
	st := procState{pid: 5} // an init as the agent created it
	for _, name := range []string{"start", "run"} {
		if err := moves[name](&st); err != nil {
			t.Fatal(err)
		}
	}
	if st.pid != 42 {
		t.Errorf("run: pid %d, want 42", st.pid)
	}
	if err := moves["exit"](&st); err != nil {
		t.Fatal(err)
	}
	if st.exitStatus != 137 || !st.exitedAt.Equal(exitAt) || st.pid != 42 {
		t.Errorf("exit: %+v", st)
	}

	st = procState{}
	if err := moves["discard"](&st); err != nil {
		t.Fatal(err)
	}
	if st.exitStatus != 0 || !st.exitedAt.Equal(discardAt) {
		t.Errorf("discard: %+v", st)
	}
	again := st
	if err := again.discard(discardAt.Add(time.Hour)); err != nil || again != st {
		t.Errorf("a second discard: %v, %+v, want it kept as %+v", err, again, st)
	}
}

// The phases as the task API reports them, and which count as started.
func TestProcStateStatus(t *testing.T) {
	cases := []struct {
		phase   phase
		status  task.Status
		started bool
	}{
		{phaseCreated, task.Status_CREATED, false},
		{phaseStarting, task.Status_CREATED, true},
		{phaseRunning, task.Status_RUNNING, true},
		{phasePaused, task.Status_PAUSED, true},
		{phaseStopped, task.Status_STOPPED, true},
		{phaseDiscarded, task.Status_STOPPED, false},
	}
	for _, tc := range cases {
		st := procState{phase: tc.phase}
		if got := st.status(); got != tc.status {
			t.Errorf("%s: status %v, want %v", tc.phase, got, tc.status)
		}
		if got := st.started(); got != tc.started {
			t.Errorf("%s: started %v, want %v", tc.phase, got, tc.started)
		}
	}
}
