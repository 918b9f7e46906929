package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"golang.org/x/sys/unix"
)

// TestRandomKills SIGKILLs the VMM, the agent or the shim at a random moment
// of a container's create+start, of an exec, or of its delete, many times.
// Each round: containerd must see the task end (no RUNNING task remains),
// ctr's cleanup must work, and afterwards no process, zombie, mount, socket,
// state directory or cgroup of ours may remain (assertClean scans /proc,
// /proc/self/mountinfo and the state directories).
func TestRandomKills(t *testing.T) {
	const rounds = 50
	s := newSuite(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d", seed)
	victims := []string{"vmm", "agent", "shim"}
	phases := []string{"create-start", "exec", "delete"}
	for i := range rounds {
		victim, phase := victims[i%3], phases[(i/3)%3]
		delay := time.Duration(rng.IntN(60)) * time.Millisecond
		t.Run(fmt.Sprintf("%02d-%s-during-%s", i, victim, phase), func(t *testing.T) {
			t.Cleanup(func() { s.assertClean(t) })
			id := fmt.Sprintf("k%d", i)
			t.Cleanup(func() { s.removeContainer(t, id) })
			ctx := ctrd.CtxFor(t, 60*time.Second)
			start := func() string {
				out, _ := s.d.Ctr(ctx, s.runArgs("-d", s.img, id, "sleep", "600")...)
				return out
			}
			var op func() string
			switch phase {
			case "create-start":
				op = start
			case "exec":
				if out := start(); s.d.TaskStatus(t, id) != "RUNNING" {
					t.Fatalf("container did not start: %s", out)
				}
				op = func() string {
					out, _ := s.d.Ctr(ctx, "task", "exec", "--exec-id", "x", id, "sh", "-c", "echo hi; sleep 0.2")
					return out
				}
			case "delete":
				if out := start(); s.d.TaskStatus(t, id) != "RUNNING" {
					t.Fatalf("container did not start: %s", out)
				}
				op = func() string {
					out, _ := s.d.Ctr(ctx, "task", "delete", "-f", id)
					return out
				}
			}
			killed := make(chan string, 1)
			done := make(chan struct{})
			go func() { killed <- s.killWhenSeen(id, victim, delay, done) }()
			out := op()
			close(done)
			what := <-killed
			lines := strings.Split(strings.TrimSpace(out), "\n")
			t.Logf("%s; ctr's last line: %s", what, short(lines[len(lines)-1]))
			// containerd must see the task end: no task left RUNNING.
			for s.d.TaskStatus(t, id) == "RUNNING" && strings.HasPrefix(what, "killed") {
				if ctx.Err() != nil {
					t.Fatalf("task %s still RUNNING after %s", id, what)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// killWhenSeen waits for the victim process of sandbox id to appear, waits
// delay more, and SIGKILLs it; it gives up when done is closed first. It
// returns what it did.
func (s *suite) killWhenSeen(id, victim string, delay time.Duration, done <-chan struct{}) string {
	for {
		if pid := s.victimPid(id, victim); pid > 0 {
			select {
			case <-time.After(delay):
			case <-done:
			}
			if err := unix.Kill(pid, unix.SIGKILL); err != nil {
				return fmt.Sprintf("%s %d gone before the kill (%v)", victim, pid, err)
			}
			return fmt.Sprintf("killed %s %d after %s", victim, pid, delay)
		}
		select {
		case <-done:
			return fmt.Sprintf("no %s seen before the operation ended", victim)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// victimPid finds the shim, VMM or agent process of sandbox id (0 if none).
func (s *suite) victimPid(id, victim string) int {
	if victim == "shim" {
		return servingShim(id)
	}
	b, err := os.ReadFile(filepath.Join(s.d.Bundle(id), sandbox.RecordName))
	if err != nil {
		return 0
	}
	var r sandbox.Record
	if json.Unmarshal(b, &r) != nil || r.VMMPid <= 0 {
		return 0
	}
	if victim == "vmm" {
		return r.VMMPid
	}
	// Under the test double the agent runs in the VMM's process group.
	for _, pid := range pidsNamed("boxlite-agent") {
		if pgid, err := unix.Getpgid(pid); err == nil && pgid == r.VMMPid {
			return pid
		}
	}
	return 0
}

func pidsNamed(prefix string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.HasPrefix(strings.TrimSpace(string(comm)), prefix) {
			out = append(out, pid)
		}
	}
	return out
}
