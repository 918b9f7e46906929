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

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

func nsSpec(ns ...specs.LinuxNamespace) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
}

func TestSandboxNetNS(t *testing.T) {
	withNet := nsSpec(specs.LinuxNamespace{Type: specs.PIDNamespace}, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"})
	if p, err := sandboxNetNS("p", withNet, true); err != nil || p != "/var/run/netns/cni-1" {
		t.Errorf("pod with a netns: %q %v", p, err)
	}
	for _, host := range []*specs.Spec{nsSpec(specs.LinuxNamespace{Type: specs.PIDNamespace}), nsSpec(specs.LinuxNamespace{Type: specs.NetworkNamespace}), {}} {
		if _, err := sandboxNetNS("p", host, true); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "host's network") {
			t.Errorf("host-network pod: %v", err)
		}
		if p, err := sandboxNetNS("c", host, false); err != nil || p != "" {
			t.Errorf("a lone container (ctr) keeps the shim's network: %q %v", p, err)
		}
	}
}

func TestGuestSpec(t *testing.T) {
	sandboxSpec := nsSpec(
		specs.LinuxNamespace{Type: specs.PIDNamespace},
		specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
		specs.LinuxNamespace{Type: specs.MountNamespace},
	)
	if err := guestSpec("p", sandboxSpec, 0); err != nil {
		t.Fatal(err)
	}
	if want := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}; !reflect.DeepEqual(sandboxSpec.Linux.Namespaces, want) {
		t.Errorf("sandbox: the VM's network namespace is the guest's own: %+v", sandboxSpec.Linux.Namespaces)
	}
	app := nsSpec(
		specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/7/ns/pid"},
		specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},
		specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/7/ns/net"},
		specs.LinuxNamespace{Type: specs.MountNamespace},
	)
	want := append([]specs.LinuxNamespace(nil), app.Linux.Namespaces...)
	if err := guestSpec("c", app, 7); err != nil || !reflect.DeepEqual(app.Linux.Namespaces, want) {
		t.Errorf("the sandbox's namespaces are kept for the guest: %v %+v", err, app.Linux.Namespaces)
	}
	other := nsSpec(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/8/ns/ipc"})
	if err := guestSpec("c", other, 7); !errdefs.IsInvalidArgument(err) {
		t.Errorf("another process's namespace: %v", err)
	}
}

func TestJoinRefusedWithoutSandbox(t *testing.T) {
	s, _ := newTestService(t)
	dir := t.TempDir()
	spec := `{"ociVersion":"1.2.0","process":{"args":["true"]},"annotations":{"` + sandbox.AnnotationContainerType + `":"container","` + sandbox.AnnotationSandboxID + `":"pod1"}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	_, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: dir})
	if err == nil || !strings.Contains(err.Error(), "pod1") || !strings.Contains(err.Error(), "does not run in this shim") {
		t.Errorf("a container whose pod's VM is not here: %v", err)
	}
}
