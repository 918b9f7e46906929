package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestNode is what the node sees of a boxlite pod (project issue 17): its
// VMM in the pod's host cgroups as a runc pod's pause process is, the PID
// CRI gets for the pod and its containers being the VMM's, and the VMM's
// oom_score_adj being the one containerd put in the sandbox's spec.
func TestNode(t *testing.T) {
	e := newEnv(t)

	// A boxlite pod's VMM is in the pod's cgroup in every hierarchy a runc
	// pod's pause process is in, on the same containerd. Before, on this
	// hybrid host, the VMM stayed in the root cpuset cgroup and the root
	// unified one (cpuset: "no space left on device": a new cpuset cgroup
	// has no cpus or mems), with a warning saying the pod's stats would
	// not count it.
	t.Run("cgroups", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		runcCfg := e.JSONFile(t, "runc-pod.json", e.PodConfig("runcpod", nil, map[string]any{"cgroup_parent": "/bxpod-runc"}))
		runcPod := e.Must(t, "runp", "--runtime", "runc", runcCfg)
		t.Cleanup(func() { removeRuncPod(t, e, runcPod, "/bxpod-runc") })
		pause := e.podPid(t, runcPod)
		want := procCgroups(t, pause)

		boxCfg := e.JSONFile(t, "box-pod.json", e.PodConfig("boxpod", nil, map[string]any{"cgroup_parent": "/bxpod-box"}))
		boxPod := e.Must(t, "runp", "--runtime", "boxlite", boxCfg)
		rec := e.Record(t, boxPod)
		got := procCgroups(t, rec.VMMPid)
		t.Logf("runc's pause process (%d):\n%s\nthe VMM (%d):\n%s", pause, want, rec.VMMPid, got)
		for h, p := range want {
			if p != "/bxpod-runc/"+runcPod {
				t.Errorf("runc's pause process is in %q for %q: not the pod's cgroup", p, h)
			}
			if got[h] != "/bxpod-box/"+boxPod {
				t.Errorf("hierarchy %q: the VMM is in %q, want the pod's cgroup /bxpod-box/%s (runc's pause process is in its pod's)", h, got[h], boxPod)
			}
		}
		for h := range got {
			if _, ok := want[h]; !ok {
				t.Errorf("the VMM is in hierarchy %q, which runc does not use", h)
			}
		}
		if log, _ := os.ReadFile(e.D.Log); bytes.Contains(log, []byte("placing the VMM in the pod's host cgroup")) {
			t.Errorf("containerd's log warns about the VMM's host cgroup:\n%s", grepLines(log, "placing the VMM"))
		}
		// CRI reads the pod's stats from that cgroup.
		if out := e.Must(t, "statsp", "-o", "json", boxPod); !strings.Contains(out, "usageCoreNanoSeconds") {
			t.Errorf("statsp: %s", out)
		}
		e.Must(t, "stopp", boxPod)
		e.Must(t, "rmp", boxPod)
	})

	// The PID CRI gets for the pod, and for its containers, is the VMM's
	// host PID (before: the guest's PID of the sandbox's init, 8 or so, an
	// unrelated host process): nsenter on it reaches the pod's network
	// namespace. CRI names the sandbox's namespaces for the pod's later
	// containers by that PID; the shim maps them to the guest's, so a
	// container still shares the pod's PID and IPC namespaces. Every task
	// event and `ctr task ls` carry the same PID; `ctr task ps` lists the
	// guest's PIDs, each noting the VMM's.
	t.Run("pids", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		events := e.watchEvents(t)
		podCfg := e.JSONFile(t, "pid-pod.json", e.PodConfig("pidpod", nil, map[string]any{"security_context": sharedPID}))
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
		rec := e.Record(t, pod)
		if pid := e.podPid(t, pod); pid != rec.VMMPid {
			t.Errorf("crictl inspectp: pid %d, want the VMM's %d", pid, rec.VMMPid)
		}
		ip := e.PodIP(t, pod)
		if out, err := exec.Command("nsenter", "-t", strconv.Itoa(e.podPid(t, pod)), "-n", "ip", "-o", "addr", "show").CombinedOutput(); err != nil || !strings.Contains(string(out), " "+ip+"/") {
			t.Errorf("nsenter -t <pod pid> -n ip addr: %v, want the pod IP %s:\n%s", err, ip, out)
		}

		c1 := e.Must(t, "create", pod, e.JSONFile(t, "p1.json", crid.ContainerConfig("p1", nil, "sh", "-c", "echo $$ > /dev/shm/p1; exec sleep 1000")), podCfg)
		e.Must(t, "start", c1)
		if pid := e.containerPid(t, c1); pid != rec.VMMPid {
			t.Errorf("crictl inspect %s: pid %d, want the VMM's %d", c1, pid, rec.VMMPid)
		}
		// The container joined the pod's PID and IPC namespaces in the
		// guest: it sees the pause process and the pod's /dev/shm.
		waitFor(t, "p1 to see the pause process and its own file in the pod's /dev/shm", func() bool {
			ps, err1 := e.Crictl(t, "exec", c1, "ps", "-o", "args")
			shm, err2 := e.Crictl(t, "exec", c1, "cat", "/dev/shm/p1")
			return err1 == nil && err2 == nil && strings.Contains(ps, "sleep 2147483647") && shm != ""
		})

		out, err := e.ctr(t, "task", "ls")
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{pod, c1} {
			if f := fieldsOf(out, id); len(f) < 2 || f[1] != strconv.Itoa(rec.VMMPid) {
				t.Errorf("ctr task ls: %s has %v, want pid %d:\n%s", id, f, rec.VMMPid, out)
			}
		}
		out, err = e.ctr(t, "task", "ps", c1)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
		if len(lines) == 0 {
			t.Errorf("ctr task ps %s lists no process:\n%s", c1, out)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) < 2 || f[0] == strconv.Itoa(rec.VMMPid) || !strings.Contains(l, fmt.Sprintf("pid:%d", rec.VMMPid)) {
				t.Errorf("ctr task ps: %q: want a guest PID noting the VMM's %d", l, rec.VMMPid)
			}
		}

		e.Must(t, "stop", c1)
		e.Must(t, "rm", c1)
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
		for _, id := range []string{pod, c1} {
			seen := events.waitTopics(t, id, "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete")
			for _, ev := range seen {
				if ev.Pid != uint32(rec.VMMPid) {
					t.Errorf("event %s of %s: pid %d, want the VMM's %d", ev.Topic, id, ev.Pid, rec.VMMPid)
				}
			}
		}
		// crictl exec's processes: their start event too.
		for _, ev := range events.all(c1) {
			if ev.Topic == "/tasks/exec-started" && ev.Pid != uint32(rec.VMMPid) {
				t.Errorf("exec-started of %s: pid %d, want the VMM's %d", c1, ev.Pid, rec.VMMPid)
			}
		}
	})

	// The VMM gets the sandbox container's oom_score_adj: containerd,
	// restricting it (restrict_oom_score_adj = true), puts its own there
	// (CRI's -998 for a sandbox is below it). containerd runs at 500 here
	// (raised: lowering needs CAP_SYS_RESOURCE, which test environments
	// lack), so the spec says 500 while the shim, one above containerd as
	// containerd's runc shim is, runs at 501: a VMM that only inherited
	// the shim's would be seen.
	t.Run("oom_score_adj", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		ctrdScore := fmt.Sprintf("/proc/%d/oom_score_adj", e.D.Pid())
		before, err := os.ReadFile(ctrdScore)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ctrdScore, []byte("500"), 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(ctrdScore, bytes.TrimSpace(before), 0) })
		podCfg := e.JSONFile(t, "oom-pod.json", e.PodConfig("oompod", nil, nil))
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
		rec := e.Record(t, pod)
		b, err := os.ReadFile(filepath.Join(e.Bundle(pod), "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var spec struct {
			Process struct {
				OOMScoreAdj *int `json:"oomScoreAdj"`
			} `json:"process"`
		}
		if err := json.Unmarshal(b, &spec); err != nil || spec.Process.OOMScoreAdj == nil {
			t.Fatalf("the sandbox's config.json has no process.oomScoreAdj (%v)", err)
		}
		want := *spec.Process.OOMScoreAdj
		if want != 500 {
			t.Errorf("containerd put oomScoreAdj %d in the sandbox's spec, want its own 500 (restrict_oom_score_adj)", want)
		}
		if got := oomScoreAdj(t, rec.VMMPid); got != want {
			t.Errorf("the VMM's oom_score_adj is %d, want the spec's %d", got, want)
		}
		shim := 0
		for _, p := range e.OurProcesses() {
			if strings.HasSuffix(p, "/containerd-shim-boxlite-v2") {
				fmt.Sscan(p, &shim)
			}
		}
		if shim == 0 {
			t.Fatal("no shim process found for the pod")
		}
		if s := oomScoreAdj(t, shim); s == want {
			t.Errorf("the shim runs at the spec's oom_score_adj %d too: a VMM that inherited it would pass", s)
		}
		t.Logf("spec %d, VMM %d, shim %d, containerd %d", want, oomScoreAdj(t, rec.VMMPid), oomScoreAdj(t, shim), oomScoreAdj(t, e.D.Pid()))
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
	})
}

// podPid is the pid `crictl inspectp` reports for a pod.
func (e *env) podPid(t *testing.T, pod string) int {
	t.Helper()
	return atoi(t, e.Must(t, "inspectp", "-o", "go-template", "--template", "{{.info.pid}}", pod))
}

// containerPid is the pid `crictl inspect` reports for a container.
func (e *env) containerPid(t *testing.T, id string) int {
	t.Helper()
	return atoi(t, e.Must(t, "inspect", "-o", "go-template", "--template", "{{.info.pid}}", id))
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a pid: %q", s)
	}
	return n
}

// ctr runs the real ctr in CRI's namespace.
func (e *env) ctr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := e.ctrCmd(ctx, args...).Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (e *env) ctrCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(ctrd.Deps(), "bin", "ctr"), append([]string{"--address", e.D.Address, "--namespace", crid.Namespace}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+e.D.PATH)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// fieldsOf is the fields of the line of out that starts with id.
func fieldsOf(out, id string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == id {
			return f
		}
	}
	return nil
}

// procCgroups is /proc/PID/cgroup: each hierarchy (its controllers as the
// file names them, "" for the unified one) and the process's cgroup there.
func procCgroups(t *testing.T, pid int) cgroupsOf {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := cgroupsOf{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 {
			out[f[1]] = f[2]
		}
	}
	return out
}

type cgroupsOf map[string]string

func (c cgroupsOf) String() string {
	var l []string
	for h, p := range c {
		l = append(l, fmt.Sprintf("  %s: %s", h, p))
	}
	slices.Sort(l)
	return strings.Join(l, "\n")
}

// removeRuncPod removes a runc pod, and the parent cgroup its cgroup_parent
// made (the kubelet's to remove, for runc).
func removeRuncPod(t *testing.T, e *env, pod, parent string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.RemovePod(ctx, pod); err != nil {
		t.Error(err)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove runc's pod parent cgroup %s: %v", d, err)
		}
	}
}

func oomScoreAdj(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		t.Fatal(err)
	}
	return atoi(t, string(b))
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// taskEvent is a task event `ctr events` printed.
type taskEvent struct {
	Topic       string
	ContainerID string `json:"container_id"`
	Pid         uint32 `json:"pid"`
}

// eventLog is `ctr events`, running until the test ends.
type eventLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *eventLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// watchEvents runs `ctr events` until the test ends, from when it is seen
// printing (a namespace made and removed marks that).
func (e *env) watchEvents(t *testing.T) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{}
	cmd := e.ctrCmd(ctx, "events")
	cmd.Stdout = l
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		l.mu.Lock()
		ok := strings.Contains(l.buf.String(), "/namespaces/")
		l.mu.Unlock()
		if ok {
			return l
		}
		if i == 100 {
			t.Fatal("ctr events printed nothing")
		}
		ns := fmt.Sprintf("bxmark%d", i)
		_, _ = e.ctr(t, "namespaces", "create", ns)
		_, _ = e.ctr(t, "namespaces", "remove", ns)
		time.Sleep(50 * time.Millisecond)
	}
}

// all is the task events of container id so far.
func (l *eventLog) all(id string) []taskEvent {
	l.mu.Lock()
	out := l.buf.String()
	l.mu.Unlock()
	var evs []taskEvent
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, " ", 7)
		if len(f) < 7 || !strings.HasPrefix(f[5], "/tasks/") {
			continue
		}
		ev := taskEvent{Topic: f[5]}
		if json.Unmarshal([]byte(f[6]), &ev) == nil && ev.ContainerID == id {
			evs = append(evs, ev)
		}
	}
	return evs
}

// waitTopics waits until container id's events include each of topics, and
// returns those events.
func (l *eventLog) waitTopics(t *testing.T, id string, topics ...string) []taskEvent {
	t.Helper()
	var got []taskEvent
	waitFor(t, fmt.Sprintf("events %v of %s", topics, id), func() bool {
		got = got[:0]
		for _, ev := range l.all(id) {
			if slices.Contains(topics, ev.Topic) {
				got = append(got, ev)
			}
		}
		for _, tp := range topics {
			if !slices.ContainsFunc(got, func(ev taskEvent) bool { return ev.Topic == tp }) {
				return false
			}
		}
		return true
	})
	return got
}
