package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestSeccomp runs containers under seccomp profiles: the init and its exec
// processes are filtered, the rule's errno comes back, and a profile the
// agent cannot honour fails the create with the reason.
func TestSeccomp(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	denyMkdir := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno}}}
	spec := testSpec("sh", "-c", "mkdir /tmp/d 2>/dev/null && echo made || echo denied; grep '^Seccomp:' /proc/self/status")
	spec.Linux.Seccomp = denyMkdir
	if got, want := ta.run(t, "seccomp", spec, ""), (result{stdout: "denied\nSeccomp:\t2\n"}); got != want {
		t.Errorf("init under a profile denying mkdir: got %+v, want %+v", got, want)
	}
	// Without no_new_privs the filter goes on before the identity is taken.
	spec = testSpec("sh", "-c", "mkdir /tmp/d 2>/dev/null && echo made || echo denied")
	spec.Process.NoNewPrivileges = false
	spec.Process.User = specs.User{UID: 1000, GID: 1000}
	spec.Linux.Seccomp = denyMkdir
	if got, want := ta.run(t, "seccomp-nnp-off", spec, ""), (result{stdout: "denied\n"}); got != want {
		t.Errorf("unprivileged init without no_new_privs: got %+v, want %+v", got, want)
	}

	// An exec process gets the container's profile.
	spec = testSpec("sleep", "100")
	spec.Linux.Seccomp = denyMkdir
	if _, _, err := ta.c.Create(ctx, "seccomp-exec", spec, ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "seccomp-exec", true)
	if _, err := ta.c.Start(ctx, "seccomp-exec"); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	_, att, err := ta.c.Exec(ctx, "seccomp-exec", "e1", testSpec("sh", "-c", "mkdir /tmp/e 2>/dev/null && echo made || echo denied; grep '^Seccomp:' /proc/self/status").Process, IO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.c.Wait(ctx, "seccomp-exec", "e1"); err != nil {
		t.Fatal(err)
	}
	att.Wait()
	if out.String() != "denied\nSeccomp:\t2\n" {
		t.Errorf("exec under the container's profile: %q", out.String())
	}

	// Never run unfiltered: a profile that cannot be compiled fails.
	spec = testSpec("true")
	spec.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}
	_, _, err = ta.c.Create(ctx, "seccomp-notify", spec, ta.rootfs, IO{})
	if err == nil {
		ta.c.Delete(ctx, "seccomp-notify", true)
	}
	if err == nil || !strings.Contains(err.Error(), "SCMP_ACT_NOTIFY") {
		t.Errorf("create with SCMP_ACT_NOTIFY: %v; want it refused, saying why", err)
	}
}

// TestDeviceRules: CRI's rule set (deny all) with runc's defaults appended
// lets the container use /dev/null and /dev/zero, and not a device outside
// them (a char device with no driver: EPERM when denied, ENXIO when let
// through); a rule allowing it lets it through.
func TestDeviceRules(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	probe := testSpec("true")
	probe.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	res, _, err := ta.c.Create(ctx, "devices-probe", probe, ta.rootfs, IO{})
	if err != nil {
		t.Fatal(err)
	}
	ta.c.Delete(ctx, "devices-probe", true)
	for _, w := range res.Warnings {
		if strings.Contains(w, "device cgroup rules not enforced") {
			t.Skipf("the agent has no cgroup v2 hierarchy here: %s", w)
		}
	}
	major, minor := int64(42), int64(0) // "demo" major: no driver
	spec := testSpec("sh", "-c", "echo x > /dev/null && head -c 1 /dev/zero >/dev/null && echo defaults-ok; cat /dev/demo 2>&1 | grep -o -e 'not permitted' -e 'No such device'")
	spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/demo", Type: "c", Major: major, Minor: minor}}
	spec.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if got, want := ta.run(t, "devices", spec, ""), (result{stdout: "defaults-ok\nnot permitted\n"}); got != want {
		t.Errorf("deny all: got %+v, want %+v", got, want)
	}
	spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "r"})
	if got, want := ta.run(t, "devices-allowed", spec, ""), (result{stdout: "defaults-ok\nNo such device\n"}); got != want {
		t.Errorf("with the device readable: got %+v, want %+v", got, want)
	}
}

// TestRefusedSpecs: hooks and Bidirectional propagation fail the create,
// saying so, and leave no container.
func TestRefusedSpecs(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 20*time.Second)
	hooks := testSpec("true")
	hooks.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/usr/bin/hook"}}}
	bidi := testSpec("true")
	bidi.Mounts = append(bidi.Mounts, specs.Mount{Destination: "/v", Type: "bind", Source: ta.dir, Options: []string{"rbind", "rshared"}})
	for _, tc := range []struct {
		id   string
		spec *specs.Spec
		want string
	}{
		{"hooks", hooks, "OCI hooks are not supported"},
		{"bidirectional", bidi, "Bidirectional mount propagation"},
	} {
		_, _, err := ta.c.Create(ctx, tc.id, tc.spec, ta.rootfs, IO{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: create: %v; want an error saying %q", tc.id, err, tc.want)
		}
		if _, err := ta.c.Pids(ctx, tc.id); err == nil {
			t.Errorf("%s: the refused container exists", tc.id)
		}
	}
}

// TestPortForward: a stream to a port of the guest's loopback reaches the
// container listening there (busybox httpd), both ways; a port where
// nothing listens is refused with the reason.
func TestPortForward(t *testing.T) {
	ta := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	l, err := net.Listen("tcp4", "127.0.0.1:0") // a free port (the test agent shares this network)
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	spec := testSpec("sh", "-c", fmt.Sprintf("mkdir -p /tmp/www && echo hello-from-guest > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:%d -h /tmp/www", port))
	if _, _, err := ta.c.Create(ctx, "web", spec, ta.rootfs, IO{}); err != nil {
		t.Fatal(err)
	}
	defer ta.c.Delete(ctx, "web", true)
	if _, err := ta.c.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err = ta.c.DialPort(ctx, uint16(port))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("DialPort %d: %v", port, err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.") || !strings.Contains(string(resp), "hello-from-guest") {
		t.Fatalf("through the port stream: %q, %v", resp, err)
	}
	// Port 1 (tcpmux): nothing listens.
	if c, err := ta.c.DialPort(ctx, 1); err == nil {
		c.Close()
		t.Error("DialPort to a closed port succeeded")
	} else if !strings.Contains(err.Error(), "nothing answers on port 1") {
		t.Errorf("DialPort to a closed port: %v", err)
	}
}
