package cri

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/podnet"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

// sharedPID is a pod's security context with shareProcessNamespace: true
// (network, IPC and PID namespaces all the pod's; mode 0 = POD).
var sharedPID = map[string]any{"namespace_options": map[string]any{"network": 0, "pid": 0, "ipc": 0}}

func TestPods(t *testing.T) {
	e := newEnv(t)

	// A pod through the boxlite handler: the sandbox boots the VM (lean
	// kernel, sized from the pod's resources), two containers join it and
	// share its network and IPC, exec, logs, stats, then everything goes.
	t.Run("lifecycle", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		linux := map[string]any{
			"security_context": sharedPID,
			"cgroup_parent":    "/bxpod-web",
			"resources":        map[string]any{"cpu_period": 100000, "cpu_quota": 150000, "memory_limit_in_bytes": 256 << 20},
		}
		web := e.PodConfig("web", nil, linux)
		web["hostname"] = "web-host"
		web["dns_config"] = map[string]any{"servers": []string{"10.87.77.53"}}
		podCfg := e.JSONFile(t, "web-pod.json", web)
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)

		rec := e.Record(t, pod)
		c := calls(t, rec)
		for _, w := range []struct{ call, key, want string }{
			{"krun_set_vm_config", "vcpus", "2"},
			{"krun_set_vm_config", "ram_mib", fmt.Sprint(256 + 64)},
			{"krun_set_root", "root", "/root"}, // inside the VMM's jail (rec.Dir)
		} {
			if got := fmt.Sprint(c[w.call][w.key]); got != w.want {
				t.Errorf("%s %s = %s, want %s", w.call, w.key, got, w.want)
			}
		}
		shas := kernelSHAs(t, filepath.Join(e.Dir, "config.toml"))
		if got := crid.MappedKernel(t, rec.VMMPid); !strings.HasPrefix(got, shas["lean"]) || shas["lean"] == "" {
			t.Errorf("pod VMM maps kernel %s, want lean (%s); kernels: %v", got, shas["lean"], shas)
		}

		c1 := e.Must(t, "create", pod, e.JSONFile(t, "c1.json", crid.ContainerConfig("c1", nil, "sh", "-c", "echo one-out; echo one-err >&2; echo $$ > /dev/shm/c1; exec sleep 1000")), podCfg)
		e.Must(t, "start", c1)
		c2 := e.Must(t, "create", pod, e.JSONFile(t, "c2.json", crid.ContainerConfig("c2", nil, "sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www")), podCfg)
		e.Must(t, "start", c2)

		// One shim, one VMM for the pod.
		if r2 := e.Record(t, pod); r2.VMMPid != rec.VMMPid {
			t.Errorf("VMM changed: %d, then %d", rec.VMMPid, r2.VMMPid)
		}
		if n := e.countVMMs(); n != 1 {
			t.Errorf("%d VMM processes for one pod", n)
		}

		if out := e.Must(t, "exec", c1, "echo", "exec-ok"); out != "exec-ok" {
			t.Errorf("exec output %q", out)
		}
		// IPC shared: c2 sees what c1 put in /dev/shm (the pod's).
		waitFor(t, "c2 to see c1's /dev/shm file", func() bool {
			out, err := e.Crictl(t, "exec", c2, "cat", "/dev/shm/c1")
			return err == nil && out != ""
		})
		// The files CRI bind-mounts from the host reach the guest, and UTS
		// is the pod's.
		for _, c := range []struct{ args, want string }{
			{"cat /etc/hostname", "web-host"},
			{"hostname", "web-host"},
			{"cat /etc/resolv.conf", "nameserver 10.87.77.53"},
			{"cat /etc/hosts", "localhost"},
		} {
			if out, err := e.Crictl(t, append([]string{"exec", c1}, strings.Fields(c.args)...)...); err != nil || !strings.Contains(out, c.want) {
				t.Errorf("%s in c1: %v %q, want %q", c.args, err, out, c.want)
			}
		}
		// PID namespace shared (the pod asked): c2 sees c1's sleep and the
		// pause process.
		waitFor(t, "c2 to see c1's sleep and the pause process", func() bool {
			out, err := e.Crictl(t, "exec", c2, "ps", "-o", "args")
			return err == nil && strings.Contains(out, "sleep 1000") && strings.Contains(out, "sleep 2147483647")
		})
		// Network shared: c1 reaches c2's server on localhost.
		waitFor(t, "c1 to reach c2's server over the pod's loopback", func() bool {
			out, err := e.Crictl(t, "exec", c1, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/")
			return err == nil && out == "hello-from-pod"
		})
		// The pod IP is reachable from the host.
		ip := e.PodIP(t, pod)
		// The VMM runs in the pod's network namespace, the one CNI set up.
		var info struct {
			Info struct {
				RuntimeSpec struct {
					Linux struct {
						Namespaces []struct{ Type, Path string } `json:"namespaces"`
					} `json:"linux"`
				} `json:"runtimeSpec"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(e.Must(t, "inspectp", pod)), &info); err != nil {
			t.Fatal(err)
		}
		netns := ""
		for _, ns := range info.Info.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" {
				netns = ns.Path
			}
		}
		if netns == "" || !sameFile(netns, fmt.Sprintf("/proc/%d/ns/net", rec.VMMPid)) || sameFile("/proc/self/ns/net", fmt.Sprintf("/proc/%d/ns/net", rec.VMMPid)) {
			t.Errorf("VMM %d is not in the pod's network namespace %q", rec.VMMPid, netns)
		}
		// The guest has a network device of its own (libkrun's TAP backend)
		// with the pod's MAC, IP and routes: the TAP in the pod's namespace
		// mirrors the pod's interface, and the agent is not in the pod's
		// namespace but in the guest's.
		podMAC := strings.Fields(netnstest.Sh(t, netns, "ip -br link show eth0"))[2]
		if c := calls(t, rec); fmt.Sprint(c["krun_add_net_tap"]["tap_name"]) != podnet.TapName || fmt.Sprint(c["krun_add_net_tap"]["mac"]) != podMAC ||
			c["net_device"]["guest_eth0"] != true {
			t.Errorf("VMM network device: %v, %v; want TAP %s with the pod's MAC %s", c["krun_add_net_tap"], c["net_device"], podnet.TapName, podMAC)
		}
		if f := netnstest.Sh(t, netns, "tc filter show dev eth0 ingress"); !strings.Contains(f, "Egress Redirect to device "+podnet.TapName) {
			t.Errorf("pod eth0 is not mirrored to the TAP: %s", f)
		}
		if out := e.Must(t, "exec", c1, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, " "+ip+"/") || !strings.Contains(out, podMAC) && !strings.Contains(e.Must(t, "exec", c1, "ip", "-o", "link", "show", "eth0"), podMAC) {
			t.Errorf("guest eth0 lacks the pod IP %s or MAC %s: %s", ip, podMAC, out)
		}
		if out := e.Must(t, "exec", c1, "ip", "route"); !strings.Contains(out, "default via "+crid.PodGateway) {
			t.Errorf("guest routes lack the pod's default route via %s: %s", crid.PodGateway, out)
		}
		if agentNS := fmt.Sprintf("/proc/%d/ns/net", ctrd.AgentOf(rec.VMMPid)); !fileExists(agentNS) || sameFile(netns, agentNS) {
			t.Errorf("the agent shares the pod's network namespace: the guest has no network device of its own")
		}
		// In from the host, at the pod IP, through the TAP.
		if body, err := ctrd.HTTPGet("http://" + ip + ":8080/"); err != nil || body != "hello-from-pod" {
			t.Errorf("GET pod IP %s:8080 from the host: %v %q", ip, err, body)
		}
		// Out from the guest to a server on the host's side of the bridge.
		srv := hostServer(t, crid.PodGateway, "hello-from-node")
		if out, err := e.Crictl(t, "exec", c1, "wget", "-q", "-O", "-", "http://"+srv+"/"); err != nil || out != "hello-from-node" {
			t.Errorf("GET %s from the pod: %v %q", srv, err, out)
		}

		// Logs: CRI's kubelet-style log file, and crictl logs.
		logFile := filepath.Join(e.LogDir, "web", "c1.log")
		waitFor(t, "c1's log file", func() bool {
			b, _ := os.ReadFile(logFile)
			return strings.Contains(string(b), " stdout F one-out") && strings.Contains(string(b), " stderr F one-err")
		})
		if out := e.Must(t, "logs", c1); !strings.Contains(out, "one-out") {
			t.Errorf("crictl logs: %q", out)
		}

		for _, id := range []string{c1, c2} {
			out := e.Must(t, "stats", "-o", "json", id)
			// CPU from the guest's cgroup; memory needs the cgroup v2 memory
			// controller, which hybrid-cgroup hosts do not give the double.
			if !strings.Contains(out, id) || !strings.Contains(out, "usageCoreNanoSeconds") {
				t.Errorf("stats of %s: %s", id, out)
			}
		}

		// Pod stats: CRI reads the pod's host cgroup (cgroup_parent), where
		// the shim put the VMM.
		if out := e.Must(t, "statsp", "-o", "json", pod); !strings.Contains(out, pod) || !strings.Contains(out, "usageCoreNanoSeconds") {
			t.Errorf("statsp: %s", out)
		}

		e.Must(t, "stop", c1)
		e.Must(t, "rm", c1)
		// The pod runs on without c1.
		if out := e.Must(t, "exec", c2, "echo", "still"); out != "still" {
			t.Errorf("exec after c1 went: %q", out)
		}
		e.Must(t, "stop", c2)
		e.Must(t, "rm", c2)
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
	})

	// The boxlite-net handler's config defaults to the net kernel: a pod
	// with no annotation gets it, and its containers run in that VM.
	t.Run("boxlite-net", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		podCfg := e.JSONFile(t, "net-pod.json", e.PodConfig("netpod", map[string]string{"io.boxlite.memory_mib": "300"}, map[string]any{
			"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}},
			"resources":        map[string]any{"memory_limit_in_bytes": 1 << 30},
		}))
		pod := e.Must(t, "runp", "--runtime", "boxlite-net", podCfg)
		rec := e.Record(t, pod)
		shas := kernelSHAs(t, filepath.Join(e.Dir, "config-net.toml"))
		if got := crid.MappedKernel(t, rec.VMMPid); !strings.HasPrefix(got, shas["net"]) || shas["net"] == "" || shas["net"] == shas["lean"] {
			t.Errorf("pod VMM maps kernel %s, want net (%s); kernels: %v", got, shas["net"], shas)
		}
		if got := fmt.Sprint(calls(t, rec)["krun_set_vm_config"]["ram_mib"]); got != "300" {
			t.Errorf("io.boxlite.memory_mib (enabled in this handler's config) sizes the VM: ram_mib = %s, want 300", got)
		}
		// A container that names the pod's own kernel is fine. Each
		// container has its own PID namespace (the kubelet's default).
		c1 := e.Must(t, "create", pod, e.JSONFile(t, "n1.json", withPIDMode(crid.ContainerConfig("n1", map[string]string{"io.boxlite.kernel": "net"}, "sleep", "1000"), 1)), podCfg)
		e.Must(t, "start", c1)
		c2 := e.Must(t, "create", pod, e.JSONFile(t, "n2.json", withPIDMode(crid.ContainerConfig("n2", nil, "sleep", "2000"), 1)), podCfg)
		e.Must(t, "start", c2)
		if out := e.Must(t, "exec", c1, "echo", "in-net-pod"); out != "in-net-pod" {
			t.Errorf("exec: %q", out)
		}
		if out := e.Must(t, "exec", c2, "ps", "-o", "args"); strings.Contains(out, "sleep 1000") || !strings.Contains(out, "sleep 2000") {
			t.Errorf("c2 should see only its own processes:\n%s", out)
		}
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
	})

	// A pod whose shim dies: containerd's `shim delete` kills the VMM and
	// cleans up (mounts, cgroups, state); the pod can then be removed.
	t.Run("shim-crash", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		podCfg := e.JSONFile(t, "crash-pod.json", e.PodConfig("crashpod", nil, map[string]any{"cgroup_parent": "/bxpod-crash"}))
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
		c1 := e.Must(t, "create", pod, e.JSONFile(t, "x1.json", crid.ContainerConfig("x1", nil, "sleep", "1000")), podCfg)
		e.Must(t, "start", c1)
		rec := e.Record(t, pod)
		shim := 0
		for _, p := range e.OurProcesses() {
			if strings.HasSuffix(p, "/containerd-shim-boxlite-v2") {
				fmt.Sscan(p, &shim)
			}
		}
		if shim == 0 {
			t.Fatal("no shim process found for the pod")
		}
		if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the pod's VMM to be gone after its shim died", func() bool {
			return syscall.Kill(rec.VMMPid, 0) != nil
		})
		// containerd learns of the container's end from the dead shim's
		// cleanup, in its own time (the kubelet waits, and retries).
		waitFor(t, "CRI to see the pod's container exited", func() bool {
			out, err := e.Crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", c1)
			return err == nil && strings.Contains(out, "CONTAINER_EXITED")
		})
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)
	})

	// What the shim refuses, with errors that say why.
	t.Run("refused", func(t *testing.T) {
		t.Cleanup(func() { e.AssertClean(t) })
		podCfg := e.JSONFile(t, "lean-pod.json", e.PodConfig("leanpod", map[string]string{"io.boxlite.kernel": "lean"}, nil))
		pod := e.Must(t, "runp", "--runtime", "boxlite", podCfg)
		// Another kernel than the pod's (CRI makes the task, so asks the
		// shim, at start).
		k := e.Must(t, "create", pod, e.JSONFile(t, "k.json", crid.ContainerConfig("k", map[string]string{"io.boxlite.kernel": "net"}, "sleep", "1000")), podCfg)
		_, err := e.Crictl(t, "start", k)
		msg := ""
		if err != nil {
			msg = strings.ReplaceAll(err.Error(), `\"`, `"`) // crictl quotes the gRPC error
		}
		if err == nil || !strings.Contains(msg, `asks for kernel "net"`) || !strings.Contains(msg, `runs the "lean" kernel`) {
			t.Errorf("a container asking for another kernel than its pod's: %v", err)
		}
		// The pod still works after the refusal.
		ok := e.Must(t, "create", pod, e.JSONFile(t, "ok.json", crid.ContainerConfig("ok", nil, "sleep", "1000")), podCfg)
		e.Must(t, "start", ok)
		if out := e.Must(t, "exec", ok, "echo", "fine"); out != "fine" {
			t.Errorf("exec after a refusal: %q", out)
		}
		e.Must(t, "stopp", pod)
		e.Must(t, "rmp", pod)

		// A host-network pod.
		host := e.JSONFile(t, "host-pod.json", e.PodConfig("hostpod", nil, map[string]any{
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}},
		}))
		if _, err := e.Crictl(t, "runp", "--runtime", "boxlite", host); err == nil || !strings.Contains(err.Error(), "cannot share the host's network namespace") {
			t.Errorf("host-network pod: %v", err)
		}
		// An io.boxlite.* annotation the handler's config does not enable.
		cpus := e.JSONFile(t, "cpus-pod.json", e.PodConfig("cpuspod", map[string]string{"io.boxlite.cpus": "2"}, nil))
		if _, err := e.Crictl(t, "runp", "--runtime", "boxlite", cpus); err == nil || !strings.Contains(err.Error(), "io.boxlite.cpus is not enabled") {
			t.Errorf("pod with a disabled annotation: %v", err)
		}
		// A kernel variant that does not exist.
		bad := e.JSONFile(t, "bad-pod.json", e.PodConfig("badpod", map[string]string{"io.boxlite.kernel": "fat"}, nil))
		if _, err := e.Crictl(t, "runp", "--runtime", "boxlite", bad); err == nil || !strings.Contains(err.Error(), "not a known kernel variant") {
			t.Errorf("pod with an unknown kernel: %v", err)
		}
	})
}

// countVMMs counts the VMM processes of this env's sandboxes.
func (e *env) countVMMs() int {
	n := 0
	for _, p := range e.OurProcesses() {
		if pid, _ := strconv.Atoi(strings.Fields(p)[0]); vmm.IsVMM(pid) {
			n++
		}
	}
	return n
}

// waitFor is ctrd.WaitFor with this suite's bound: 30 s, polled every
// 50 ms.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctrd.WaitFor(t, what, 30*time.Second, 50*time.Millisecond, cond)
}

// withPIDMode sets a container config's PID namespace mode (0 pod, 1
// container).
func withPIDMode(c map[string]any, mode int) map[string]any {
	c["linux"] = map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": mode}}}
	return c
}

// hostServer serves body over HTTP at ip (on the host) until the test ends,
// and returns its address.
func hostServer(t *testing.T, ip, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
