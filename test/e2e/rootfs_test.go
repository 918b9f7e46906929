package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
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
	ctx := ctxFor(t, 60*time.Second)
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
