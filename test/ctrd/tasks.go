package ctrd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// ExitCode is the exit status of a command's error (0 for nil, -1 when it
// did not exit).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// CtxFor is a context for one step of a test, bounded by d so that a hang
// fails; it is cancelled when the test ends.
func CtxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// RemoveContainer kills container id's task and deletes the task and the
// container record (ctr run without --rm), within ctx; the test fails only
// when the record stays.
func (d *Daemon) RemoveContainer(t testing.TB, ctx context.Context, id string) {
	t.Helper()
	_, _ = d.Ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
	_, _ = d.Ctr(ctx, "task", "delete", "-f", id)
	if out, err := d.Ctr(ctx, "container", "delete", id); err != nil && !strings.Contains(out, "not found") {
		t.Errorf("ctr container delete %s: %v: %s", id, err, out)
	}
}

// TaskStatus is task id's status as `ctr task ls` shows it ("RUNNING",
// "PAUSED", ...), or "(not listed)".
func (d *Daemon) TaskStatus(t testing.TB, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := d.CtrStdout(ctx, "task", "ls")
	if err != nil {
		t.Fatalf("ctr task ls: %v", err)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return "(not listed)"
}

// WaitRunning waits until containerd reports task id RUNNING (Start has
// returned), or ctx ends.
func (d *Daemon) WaitRunning(t testing.TB, ctx context.Context, id string) {
	t.Helper()
	for d.TaskStatus(t, id) != "RUNNING" {
		if ctx.Err() != nil {
			t.Fatalf("task %s is not RUNNING: %s", id, d.TaskStatus(t, id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartUntilReady starts cmd (a ctr run whose container prints "ready" when
// it is set up) and returns its stdout once that line has come.
func StartUntilReady(t testing.TB, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("container did not start: %q %v", line, err)
	}
	return r
}

// SyncBuffer is a strings.Builder safe for a writer and a reader (a
// command's output read while it runs).
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TaskTopics picks the /tasks/ events of container id from ctr events'
// output ("date time zone UTC namespace topic event"), with the process id
// after exits.
func TaskTopics(out, id string) []string {
	var topics []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.SplitN(l, " ", 7)
		if len(f) < 7 || !strings.HasPrefix(f[5], "/tasks/") {
			continue
		}
		var ev struct {
			ContainerID string `json:"container_id"`
			ID          string `json:"id"`
		}
		if json.Unmarshal([]byte(f[6]), &ev) != nil || ev.ContainerID != id {
			continue
		}
		topic := f[5]
		if topic == "/tasks/exit" {
			topic += " " + ev.ID
		}
		topics = append(topics, topic)
	}
	return topics
}
