package guest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// TestCRI drives pods through crictl, one guest per pod on the emulated
// engine, on test/crid's CNI bridge network.
func TestCRI(t *testing.T) {
	e := crid.New(t, crid.Options{Libkrun: engineLib(t)})
	versions := kernelVersions(t, e.LeanConfig)

	// A pod of two containers sharing its PID namespace, on the pod
	// network: the guest's virtio-net device has the pod IP, a server in
	// one container answers at that IP from the host, the other container
	// sees the first's processes; container and pod statistics come from
	// the guest's cgroups (memory rises when a container allocates, CPU
	// time advances).
	t.Run("pod", func(t *testing.T) {
		t.Cleanup(func() { criClean(t, e) })
		linux := map[string]any{
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 0, "pid": 0, "ipc": 0}},
			"cgroup_parent":    "/bxpod-guest",
		}
		podCfg := e.JSONFile(t, "pod.json", e.PodConfig("guestpod", nil, linux))
		start := time.Now()
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
		t.Logf("crictl runp (a guest booted under TCG) in %s", time.Since(start).Round(time.Millisecond))
		web := e.Must(t, "create", pod, e.JSONFile(t, "web.json", crid.ContainerConfig("web", nil, "sh", "-c",
			"mkdir -p /www && echo hello-from-the-guest > /www/index.html && exec httpd -f -p 8080 -h /www")), podCfg)
		e.Must(t, "start", web)
		// The second allocates ~40 MB once told to (/tmp/go), then idles.
		mem := e.Must(t, "create", pod, e.JSONFile(t, "mem.json", crid.ContainerConfig("mem", nil, "sh", "-c",
			`while [ ! -e /tmp/go ]; do sleep 0.1; done; x=$(head -c 40000000 /dev/zero | tr '\0' a); touch /tmp/allocated; while :; do sleep 1; done`)), podCfg)
		e.Must(t, "start", mem)

		if out := e.Must(t, "exec", mem, "uname", "-r"); out != versions["lean"] {
			t.Errorf("uname -r in the pod: %q, want the lean kernel's %q", out, versions["lean"])
		}
		ip := e.PodIP(t, pod)
		if out := e.Must(t, "exec", mem, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, " "+ip+"/") {
			t.Errorf("the guest's eth0 lacks the pod IP %s: %s", ip, out)
		}
		if out := e.Must(t, "exec", mem, "cat", "/sys/class/net/eth0/device/uevent"); !strings.Contains(out, "virtio") {
			t.Errorf("the guest's eth0 is not a virtio device: %s", out)
		}
		if body, err := ctrd.HTTPGet("http://" + ip + ":8080/"); err != nil || body != "hello-from-the-guest" {
			t.Errorf("GET pod IP %s:8080 from the host: %v %q", ip, err, body)
		}
		waitFor(t, "the mem container to see the web container's httpd and the pause process", func() bool {
			out, err := e.Crictl(t, "exec", mem, "ps", "-o", "args")
			return err == nil && strings.Contains(out, "httpd -f -p 8080") && strings.Contains(out, "sleep 2147483647")
		})

		before := containerStats(t, e, mem)
		podBefore := podStats(t, e, pod)
		e.Must(t, "exec", mem, "touch", "/tmp/go")
		waitFor(t, "the mem container to allocate", func() bool {
			_, err := e.Crictl(t, "exec", mem, "test", "-e", "/tmp/allocated")
			return err == nil
		})
		after := containerStats(t, e, mem)
		podAfter := podStats(t, e, pod)
		t.Logf("crictl stats mem: working set %d -> %d bytes, cpu %d -> %d ns; statsp: cpu %d -> %d ns, working set %d bytes",
			before.mem, after.mem, before.cpu, after.cpu, podBefore.cpu, podAfter.cpu, podAfter.mem)
		if after.mem < before.mem+30<<20 {
			t.Errorf("crictl stats: working set %d -> %d: want it to rise by the ~40 MB the container holds", before.mem, after.mem)
		}
		if after.cpu <= before.cpu {
			t.Errorf("crictl stats: cpu %d -> %d ns: want it to advance", before.cpu, after.cpu)
		}
		if podAfter.cpu <= podBefore.cpu {
			t.Errorf("crictl statsp: cpu %d -> %d ns: want it to advance", podBefore.cpu, podAfter.cpu)
		}
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
	})

	// A container over its memory limit is killed by the guest's OOM
	// killer, and CRI says so: reason OOMKilled, exit code 137.
	t.Run("oom", func(t *testing.T) {
		t.Cleanup(func() { criClean(t, e) })
		podCfg := e.JSONFile(t, "oom-pod.json", e.PodConfig("oompod", nil, nil))
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
		c := crid.ContainerConfig("hog", nil, "sh", "-c", "x=a; while :; do x=$x$x; done")
		c["linux"] = map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}}
		hog := e.Must(t, "create", pod, e.JSONFile(t, "hog.json", c), podCfg)
		e.Must(t, "start", hog)
		var st struct {
			Status struct {
				State    string `json:"state"`
				Reason   string `json:"reason"`
				ExitCode int    `json:"exitCode"`
			} `json:"status"`
		}
		waitFor(t, "the memory hog to exit", func() bool {
			out, err := e.Crictl(t, "inspect", hog)
			return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Status.State == "CONTAINER_EXITED"
		})
		if st.Status.Reason != "OOMKilled" || st.Status.ExitCode != 137 {
			t.Errorf("crictl inspect: reason %q, exit code %d; want OOMKilled, 137", st.Status.Reason, st.Status.ExitCode)
		}
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
	})
}

type usage struct{ cpu, mem uint64 }

// u64 is a protobuf JSON uint64: a string, or (from older writers) a number.
type u64 uint64

func (u *u64) UnmarshalJSON(b []byte) error {
	var n uint64
	err := json.Unmarshal([]byte(strings.Trim(string(b), `"`)), &n)
	*u = u64(n)
	return err
}

// criClean is e.AssertClean and no engine process left.
func criClean(t *testing.T, e *crid.Env) {
	t.Helper()
	e.AssertClean(t)
	if p := engineProcesses(); len(p) > 0 {
		t.Errorf("engine processes left: %v", p)
	}
}

// containerStats is `crictl stats` of a container: CPU time and working set.
func containerStats(t *testing.T, e *crid.Env, id string) usage {
	t.Helper()
	var out struct {
		Stats []struct {
			CPU struct {
				UsageCoreNanoSeconds struct{ Value u64 } `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes struct{ Value u64 } `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	s := e.Must(t, "stats", "-o", "json", id)
	if err := json.Unmarshal([]byte(s), &out); err != nil || len(out.Stats) != 1 {
		t.Fatalf("crictl stats: %v\n%s", err, s)
	}
	return usage{uint64(out.Stats[0].CPU.UsageCoreNanoSeconds.Value), uint64(out.Stats[0].Memory.WorkingSetBytes.Value)}
}

// podStats is `crictl statsp` of a pod: its Linux CPU time and working set.
func podStats(t *testing.T, e *crid.Env, id string) usage {
	t.Helper()
	var out struct {
		Stats []struct {
			Linux struct {
				CPU struct {
					UsageCoreNanoSeconds struct{ Value u64 } `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Memory struct {
					WorkingSetBytes struct{ Value u64 } `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"linux"`
		} `json:"stats"`
	}
	s := e.Must(t, "statsp", "-o", "json", id)
	if err := json.Unmarshal([]byte(s), &out); err != nil || len(out.Stats) != 1 {
		t.Fatalf("crictl statsp: %v\n%s", err, s)
	}
	return usage{uint64(out.Stats[0].Linux.CPU.UsageCoreNanoSeconds.Value), uint64(out.Stats[0].Linux.Memory.WorkingSetBytes.Value)}
}

// waitFor is ctrd.WaitFor with this suite's bound: 60 s, polled every
// 100 ms.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctrd.WaitFor(t, what, 60*time.Second, 100*time.Millisecond, cond)
}
