package dind

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
)

const (
	// image is the dind test image: deps' dind/rootfs.tar as one layer.
	image = "docker.io/boxlite/dind:test"
	// netHandler and leanHandler are the CRI runtime handlers (and
	// Kubernetes RuntimeClasses) of the two kernels.
	netHandler, leanHandler = "boxlite-net", "boxlite"
	// webBody is what the published container serves.
	webBody = "hello-from-dind"
	// readyBound bounds the wait for dockerd, and for the lean pod's
	// container to exit (a hang, not a timing assertion: under emulation
	// on a busy 2-core machine each takes tens of seconds).
	readyBound = 180 * time.Second
	// cleanupMargin is left of the test binary's deadline (go test
	// -timeout) for the cleanup, which must run: the steps stop before.
	cleanupMargin = 90 * time.Second
)

// imageConfig is the dind image's run configuration.
var imageConfig = ocitest.Config{Cmd: []string{"dockerd"}}

// TestDockerInDocker runs testdata/pod.json and testdata/docker.json (the
// pod README's docker-in-docker section shows) through crictl: on
// boxlite-net dockerd becomes ready and does its work; on boxlite (lean) it
// fails with its iptables error and the shim names the runtime class to use.
func TestDockerInDocker(t *testing.T) {
	lib, words := guestLibkrun(t)
	t.Logf("guests run on %s", words)
	// Every step ends before the test binary's deadline, so that a stuck
	// guest fails the test and the cleanup still runs.
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-cleanupMargin))
		defer cancel()
	}
	rootfs := filepath.Join(ctrd.Deps(), "dind", "rootfs.tar")
	ctrd.Require(t, rootfs, filepath.Join(ctrd.Deps(), "busybox", "busybox"))
	e := crid.New(t, crid.Options{Libkrun: lib})
	importImage(t, e, rootfs)

	images, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(images) })
	if err := os.Chmod(images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ocitest.BusyboxDockerArchive(filepath.Join(ctrd.Deps(), "busybox", "busybox"), filepath.Join(images, "busybox.tar"), "busybox:latest"); err != nil {
		t.Fatal(err)
	}

	t.Run("net", func(t *testing.T) {
		t.Cleanup(func() { clean(t, e) })
		p := startPod(ctx, t, e, netHandler, images)
		ready := p.waitReady(t)
		t.Logf("dockerd ready: %s after the container started (seen through crictl exec); dockerd's own log: %s from \"Starting up\" to \"API listen\"",
			ready.Round(100*time.Millisecond), p.dockerdStartup(t))

		if out := p.exec(t, "uname", "-r"); !strings.HasSuffix(out, "-boxlite-net") {
			t.Errorf("uname -r in the pod: %q, want the net kernel's", out)
		}
		if out := p.exec(t, "docker", "info", "--format", "{{.Driver}} {{json .DriverStatus}} cgroup v{{.CgroupVersion}}"); !strings.HasPrefix(out, "overlay2 ") || !strings.Contains(out, `["Backing Filesystem","tmpfs"]`) {
			t.Errorf("docker info: %q, want overlay2 on the pod's tmpfs", out)
		}
		// dockerd programmed its rules (iptables-nft, Debian's default)
		// and made its bridge in the guest kernel; legacy iptables works
		// there too.
		if out := p.exec(t, "iptables", "-t", "nat", "-S"); !strings.Contains(out, "-N DOCKER") || !strings.Contains(out, "-j MASQUERADE") {
			t.Errorf("iptables -t nat -S: no DOCKER chain or MASQUERADE rule:\n%s", out)
		}
		p.exec(t, "iptables-legacy", "-t", "nat", "-L", "-n")
		if out := p.exec(t, "cat", "/sys/class/net/docker0/bridge/bridge_id"); out == "" {
			t.Error("docker0 is not a bridge")
		}

		if out := p.exec(t, "docker", "load", "-q", "-i", "/images/busybox.tar"); out != "Loaded image: busybox:latest" {
			t.Errorf("docker load: %q", out)
		}
		if out := p.exec(t, "docker", "run", "--rm", "busybox", "echo", "dind-works"); out != "dind-works" {
			t.Errorf("docker run --rm busybox echo dind-works: %q", out)
		}
		p.exec(t, "docker", "run", "-d", "--name", "web", "-p", "8080:80", "busybox", "sh", "-c",
			"mkdir -p /www && echo "+webBody+" > /www/index.html && exec httpd -f -p 80 -h /www")
		if out := p.exec(t, "iptables", "-t", "nat", "-S", "DOCKER"); !regexp.MustCompile(`--dport 8080 -j DNAT --to-destination 172\.17\.[0-9.]+:80`).MatchString(out) {
			t.Errorf("no DNAT rule for the published port:\n%s", out)
		}
		// From another process in the pod, to the pod IP (docker's OUTPUT
		// DNAT rule), and from the host (its PREROUTING one, on the
		// guest's eth0).
		ip := p.ip(t)
		in := p.exec(t, "bash", "-c", `exec 3<>/dev/tcp/`+ip+`/8080 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3`)
		if !strings.HasSuffix(in, webBody) {
			t.Errorf("GET %s:8080 from a process in the pod: %q", ip, in)
		}
		body, err := ctrd.HTTPGet("http://" + ip + ":8080/")
		t.Logf("GET http://%s:8080/ from the host: %q", ip, body)
		if err != nil || body != webBody {
			t.Errorf("GET http://%s:8080/ from the host: %v %q, want %q", ip, err, body, webBody)
		}
		p.exec(t, "docker", "rm", "-f", "web")
		p.remove(t)
	})

	t.Run("lean", func(t *testing.T) {
		t.Cleanup(func() { clean(t, e) })
		p := startPod(ctx, t, e, leanHandler, images)
		code, log := p.waitExited(t)
		// dockerd's last words: from its fatal error to the end (the
		// error carries iptables' output, newline and all).
		fatal := ""
		if i := strings.LastIndex(log, "failed to start daemon"); i >= 0 {
			fatal = strings.TrimSpace(log[i:])
		}
		t.Logf("the container exited with status %d; dockerd's error:\n%s", code, fatal)
		if code == 0 || !strings.Contains(fatal, "iptables") {
			t.Errorf("on the lean kernel dockerd should fail on iptables; exit %d, log:\n%s", code, log)
		}
		hint := waitLog(t, e.D.Log, "use the net kernel")
		t.Logf("the shim's hint (containerd's log): %s", hint)
		if !strings.Contains(hint, "RuntimeClass "+netHandler) || !strings.Contains(hint, p.ctr) {
			t.Errorf("the shim's hint names neither the runtime class boxlite-net nor the container: %s", hint)
		}
		p.remove(t)
	})
}

// importImage imports the dind image (the root filesystem's tar as one
// layer) into CRI's namespace.
func importImage(t *testing.T, e *crid.Env, rootfs string) {
	t.Helper()
	start := time.Now()
	archive := filepath.Join(e.Dir, "dind-oci.tar")
	if err := ocitest.RootfsImage(rootfs, archive, image, imageConfig); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(archive)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(ctrd.Deps(), "bin", "ctr"), "--address", e.D.Address, "--namespace", crid.Namespace, "image", "import", archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctr image import %s: %v\n%s", archive, err, out)
	}
	st, _ := os.Stat(rootfs)
	t.Logf("imported %s (%d MiB, one layer) in %s", image, st.Size()>>20, time.Since(start).Round(100*time.Millisecond))
}

// pod is the dind pod of one runtime class.
type pod struct {
	ctx     context.Context // the test's steps' deadline
	e       *crid.Env
	handler string
	id, ctr string
	log     string // the container's CRI log
	started time.Time
}

// startPod runs testdata's pod and container with the runtime handler.
func startPod(ctx context.Context, t *testing.T, e *crid.Env, handler, images string) *pod {
	t.Helper()
	logDir := filepath.Join(e.LogDir, "dind-"+handler)
	p := &pod{ctx: ctx, e: e, handler: handler, log: filepath.Join(logDir, "docker.log")}
	podCfg := testdata(t, e, "pod.json", map[string]string{"@LOGDIR@": logDir})
	ctrCfg := testdata(t, e, "docker.json", map[string]string{"@IMAGES@": images})
	start := time.Now()
	p.id = p.crictl(t, "runp", "--runtime", handler, podCfg)
	t.Logf("crictl runp --runtime %s: pod %.12s in %s", handler, p.id, time.Since(start).Round(100*time.Millisecond))
	p.ctr = p.crictl(t, "create", p.id, ctrCfg, podCfg)
	p.crictl(t, "start", p.ctr)
	p.started = time.Now()
	return p
}

// testdata is a file of testdata with its placeholders replaced, written
// under the env's directory.
func testdata(t *testing.T, e *crid.Env, name string, repl map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range repl {
		if !strings.Contains(s, k) {
			t.Fatalf("testdata/%s has no %s", name, k)
		}
		s = strings.ReplaceAll(s, k, v)
	}
	return e.Write(t, name, s)
}

// crictl runs crictl, logging the command (the demo's transcript), and
// fails the test on error.
func (p *pod) crictl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.e.CrictlContext(p.ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exec runs a command in the dind container, logging it and its output.
func (p *pod) exec(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := p.e.CrictlContext(p.ctx, append([]string{"exec", p.ctr}, args...)...)
	t.Logf("$ %s   (%s)\n%s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond), out)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.tail())
	}
	return out
}

// state is the container's CRI state and exit code.
func (p *pod) state(t *testing.T) (string, int) {
	t.Helper()
	var st struct {
		Status struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
		} `json:"status"`
	}
	out := p.crictl(t, "inspect", p.ctr)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("crictl inspect: %v\n%s", err, out)
	}
	return st.Status.State, st.Status.ExitCode
}

// waitReady waits until dockerd answers in the container (docker version
// reaches the server), and returns how long that took from its start.
func (p *pod) waitReady(t *testing.T) time.Duration {
	t.Helper()
	deadline := p.started.Add(readyBound)
	for {
		if st, code := p.state(t); st != "CONTAINER_RUNNING" {
			t.Fatalf("the dind container is %s (exit %d) before dockerd became ready; its log:\n%s", st, code, p.tail())
		}
		out, err := p.e.CrictlContext(p.ctx, "exec", p.ctr, "docker", "version", "--format", "{{.Server.Version}}")
		if err == nil && out != "" {
			ready := time.Since(p.started)
			t.Logf("$ docker version --format {{.Server.Version}}\n%s", out)
			return ready
		}
		if time.Now().After(deadline) || p.ctx.Err() != nil {
			t.Fatalf("dockerd did not answer within %s: %v; its log:\n%s", time.Since(p.started).Round(time.Second), err, p.tail())
		}
		time.Sleep(time.Second)
	}
}

// waitExited waits until the container has exited, and returns its exit
// code and its log (the lines' text, without CRI's prefixes).
func (p *pod) waitExited(t *testing.T) (int, string) {
	t.Helper()
	deadline := p.started.Add(readyBound)
	for {
		st, code := p.state(t)
		if st == "CONTAINER_EXITED" {
			t.Logf("the container exited %s after its start", time.Since(p.started).Round(100*time.Millisecond))
			return code, p.text()
		}
		if time.Now().After(deadline) || p.ctx.Err() != nil {
			t.Fatalf("the dind container is still %s after %s; its log:\n%s", st, time.Since(p.started).Round(time.Second), p.tail())
		}
		time.Sleep(time.Second)
	}
}

// text is the container's log without CRI's time, stream and tag prefixes.
func (p *pod) text() string {
	f, err := os.Open(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var b strings.Builder
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if f := strings.SplitN(s.Text(), " ", 4); len(f) == 4 {
			b.WriteString(f[3] + "\n")
		}
	}
	return b.String()
}

// tail is the end of the container's log.
func (p *pod) tail() string {
	s := p.text()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

var logTime = regexp.MustCompile(`time="([^"]+)"`)

// dockerdStartup is the time from dockerd's "Starting up" to its "API listen
// on" log line, by dockerd's own timestamps (the guest's clock).
func (p *pod) dockerdStartup(t *testing.T) time.Duration {
	t.Helper()
	var from, to time.Time
	for _, l := range strings.Split(p.text(), "\n") {
		m := logTime.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(l, `msg="Starting up"`):
			from = ts
		case strings.Contains(l, `msg="API listen on `) && to.IsZero():
			to = ts
		}
	}
	if from.IsZero() || to.IsZero() {
		t.Errorf("dockerd's log lacks \"Starting up\" or \"API listen on\":\n%s", p.tail())
		return 0
	}
	return to.Sub(from).Round(10 * time.Millisecond)
}

// ip is the pod's IP.
func (p *pod) ip(t *testing.T) string {
	t.Helper()
	var insp struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(p.crictl(t, "inspectp", p.id)), &insp); err != nil || insp.Status.Network.IP == "" {
		t.Fatalf("inspectp: no pod IP (%v)", err)
	}
	return insp.Status.Network.IP
}

// remove stops and removes the pod.
func (p *pod) remove(t *testing.T) {
	t.Helper()
	start := time.Now()
	p.crictl(t, "stopp", p.id)
	p.crictl(t, "rmp", p.id)
	t.Logf("crictl stopp, rmp: pod %.12s removed in %s", p.id, time.Since(start).Round(100*time.Millisecond))
}

// clean is e.AssertClean and no engine process left.
func clean(t *testing.T, e *crid.Env) {
	t.Helper()
	e.AssertClean(t)
	if p := engineProcesses(ctrd.BinDir(t)); len(p) > 0 {
		t.Errorf("engine processes left: %v", p)
	}
}

// waitLog waits for a line of the file holding want, and returns it.
func waitLog(t *testing.T, file, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, want) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("no line of %s says %q within 30s", file, want)
			return ""
		}
		time.Sleep(100 * time.Millisecond)
	}
}
