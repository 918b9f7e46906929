package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// TestMissingRootfs creates a task whose root filesystem mount names a
// directory that does not exist (containerd's task API takes the mounts from
// the caller): the shim must refuse it with an error naming the mount, and
// leave nothing behind.
func TestMissingRootfs(t *testing.T) {
	s := newSuite(t)
	t.Cleanup(func() { s.assertClean(t) })
	id := "norootfs"
	ctx := ctrd.CtxFor(t, 60*time.Second)
	if out, err := s.d.Ctr(ctx, "container", "create", "--runtime", runtimeName, "--runtime-config-path", s.cfg, s.img, id, "true"); err != nil {
		t.Fatalf("ctr container create: %v: %s", err, out)
	}
	t.Cleanup(func() { s.removeContainer(t, id) })
	conn, err := grpc.NewClient("unix://"+s.d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const missing = "/nonexistent/boxlite-rootfs"
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "boxlite-test")
	_, err = tasks.NewTasksClient(conn).Create(ctx, &tasks.CreateTaskRequest{
		ContainerID: id,
		Rootfs:      []*types.Mount{{Type: "bind", Source: missing, Options: []string{"rbind", "rw"}}},
	})
	if err == nil {
		t.Fatal("a task with a missing rootfs was created")
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("the error does not name the missing rootfs %s: %v", missing, err)
	}
	t.Logf("refused: %v", err)
}

// TestVMMDiesBeforeStart kills the VMM between Create and Start: Start must
// fail clearly, and the task must end (exit 255, a sandbox failure) and be
// deletable, with nothing left behind.
func TestVMMDiesBeforeStart(t *testing.T) {
	s := newSuite(t)
	t.Cleanup(func() { s.assertClean(t) })
	id := "diesbeforestart"
	ctx := ctrd.CtxFor(t, 60*time.Second)
	if out, err := s.d.Ctr(ctx, "container", "create", "--runtime", runtimeName, "--runtime-config-path", s.cfg, s.img, id, "sleep", "100"); err != nil {
		t.Fatalf("ctr container create: %v: %s", err, out)
	}
	t.Cleanup(func() { s.removeContainer(t, id) })
	c, err := client.New(s.d.Address, client.WithDefaultNamespace("boxlite-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := syscallKill(s.record(t, id).VMMPid); err != nil {
		t.Fatal(err)
	}
	// Start may race the shim noticing the VMM's end: either way it fails.
	for {
		err := task.Start(ctx)
		if err == nil {
			t.Fatal("Start succeeded after the VMM was killed")
		}
		if strings.Contains(err.Error(), "has failed") || strings.Contains(err.Error(), "already started") {
			t.Logf("start refused: %v", err)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// As `ctr task delete -f`: kill, wait for the exit, delete.
	st, err := task.Delete(ctx, client.WithProcessKill)
	if err != nil {
		t.Fatalf("delete after the VMM died: %v", err)
	}
	if st.ExitCode() != 255 {
		t.Errorf("exit status %d, want 255 (sandbox failure)", st.ExitCode())
	}
}
