package task

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

func nsSpec(ns ...specs.LinuxNamespace) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
}

// TestSandboxNetNS: a sandbox gets its spec's network namespace, or a fresh
// one; never the host's. Before the VM-boundary fix, a lone container (ctr)
// without a path, or with the host's namespace path, put the VMM in the
// shim's namespace (this test failed there).
func TestSandboxNetNS(t *testing.T) {
	pod := netnstest.New(t)
	for _, tc := range []struct {
		name     string
		spec     *specs.Spec
		want     string
		wantHost bool
	}{
		{"a CNI namespace", nsSpec(specs.LinuxNamespace{Type: specs.PIDNamespace}, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: pod}), pod, false},
		{"a namespace of its own without a path", nsSpec(specs.LinuxNamespace{Type: specs.NetworkNamespace}), "", false},
		{"no network namespace (hostNetwork, --net-host)", nsSpec(specs.LinuxNamespace{Type: specs.PIDNamespace}), "", true},
		{"no namespaces at all", &specs.Spec{}, "", true},
		{"the host's, by the shim's path", nsSpec(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := sandboxNetNS("sb", tc.spec)
			if tc.wantHost {
				if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "cannot share the host's network namespace") {
					t.Errorf("got %q, %v; want it refused as the host's network", p, err)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Errorf("got %q, %v; want %q", p, err, tc.want)
			}
		})
	}
	missing := nsSpec(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/none-such"})
	if _, err := sandboxNetNS("sb", missing); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "none-such cannot be opened") {
		t.Errorf("a namespace path that cannot be opened: %v", err)
	}
}

func TestCheckHostIPC(t *testing.T) {
	if err := checkHostIPC("sb", nsSpec(specs.LinuxNamespace{Type: specs.IPCNamespace})); err != nil {
		t.Errorf("an IPC namespace of its own: %v", err)
	}
	for _, spec := range []*specs.Spec{nsSpec(specs.LinuxNamespace{Type: specs.PIDNamespace}), {}} {
		if err := checkHostIPC("sb", spec); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "host's IPC namespace") {
			t.Errorf("hostIPC: %v", err)
		}
	}
}

func TestGuestSpec(t *testing.T) {
	sandboxSpec := nsSpec(
		specs.LinuxNamespace{Type: specs.PIDNamespace},
		specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
		specs.LinuxNamespace{Type: specs.MountNamespace},
	)
	if err := guestSpec("p", sandboxSpec, 0, 0); err != nil {
		t.Fatal(err)
	}
	if want := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}; !reflect.DeepEqual(sandboxSpec.Linux.Namespaces, want) {
		t.Errorf("sandbox: the VM's network namespace is the guest's own: %+v", sandboxSpec.Linux.Namespaces)
	}
	// CRI names the sandbox's namespaces by the PID the shim reported for
	// its task, the VMM's (9190): in the guest they are the sandbox init's
	// (guest PID 7).
	app := nsSpec(
		specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/9190/ns/pid"},
		specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/9190/ns/ipc"},
		specs.LinuxNamespace{Type: specs.UTSNamespace, Path: "/proc/9190/ns/uts"},
		specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/9190/ns/net"},
		specs.LinuxNamespace{Type: specs.MountNamespace},
	)
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/7/ns/pid"},
		{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/7/ns/uts"},
		{Type: specs.NetworkNamespace, Path: "/proc/7/ns/net"},
		{Type: specs.MountNamespace},
	}
	if err := guestSpec("c", app, 9190, 7); err != nil || !reflect.DeepEqual(app.Linux.Namespaces, want) {
		t.Errorf("the sandbox's namespaces become the guest init's: %v %+v", err, app.Linux.Namespaces)
	}
	// The guest PID named as a host path is another host process's (before
	// the shim reported the VMM's PID, CRI handed this, and it was kept).
	for _, path := range []string{"/proc/7/ns/ipc", "/proc/8/ns/ipc", "/proc/self/ns/ipc"} {
		if err := guestSpec("c", nsSpec(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: path}), 9190, 7); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s, not the sandbox's: %v", path, err)
		}
	}
}

func TestJoinRefusedWithoutSandbox(t *testing.T) {
	s, _ := newTestService(t)
	dir := t.TempDir()
	spec := `{"ociVersion":"1.2.0","process":{"args":["true"]},"annotations":{"` + config.AnnotationContainerType + `":"container","` + config.AnnotationSandboxID + `":"pod1"}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	_, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir})
	if err == nil || !strings.Contains(err.Error(), "pod1") || !strings.Contains(err.Error(), "does not run in this shim") {
		t.Errorf("a container whose pod's VM is not here: %v", err)
	}
}
