package task

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// newTestClient serves s as the shim does, on a ttrpc server with s's
// interceptor, over a Unix socket in a temporary directory, and returns a
// client of it.
func newTestClient(t *testing.T, s *service) taskAPI.TTRPCTaskService {
	t.Helper()
	server, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(s.UnaryServerInterceptor()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterTTRPC(server); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "ttrpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(context.Background(), l) }()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() {
		client.Close()
		if err := server.Close(); err != nil {
			t.Errorf("close the ttrpc server: %v", err)
		}
		if err := <-served; err != nil && err != ttrpc.ErrServerClosed {
			t.Errorf("serve: %v", err)
		}
	})
	return taskAPI.NewTTRPCTaskClient(client)
}

// The RPCs return native errdefs errors; the client gets the gRPC code of
// each, mapped by the interceptor, and never Unimplemented from Create.
func TestErrorsCrossIntoGRPCOnce(t *testing.T) {
	s, _ := newTestService(t)
	client := newTestClient(t, s)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		call func(taskAPI.TTRPCTaskService) error
		code codes.Code
		msg  string
	}{
		{"State of an unknown task", func(api taskAPI.TTRPCTaskService) error {
			_, err := api.State(ctx, &taskAPI.StateRequest{ID: "x"})
			return err
		}, codes.NotFound, `task "x": not found`},
		{"Checkpoint", func(api taskAPI.TTRPCTaskService) error {
			_, err := api.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: "x"})
			return err
		}, codes.Unimplemented, "checkpoint of a micro-VM sandbox is not supported"},
		{"Create from a checkpoint", func(api taskAPI.TTRPCTaskService) error {
			_, err := api.Create(ctx, &taskAPI.CreateTaskRequest{ID: "x", Checkpoint: "/nowhere"})
			return err
		}, codes.FailedPrecondition, "boxlite: create: restoring from a checkpoint: not implemented"},
		{"Create from a malformed bundle", func(api taskAPI.TTRPCTaskService) error {
			_, err := api.Create(ctx, &taskAPI.CreateTaskRequest{ID: "x", Bundle: bundle})
			return err
		}, codes.InvalidArgument, "config.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			native := tc.call(s)
			if _, isStatus := status.FromError(native); native == nil || isStatus {
				t.Errorf("the RPC itself returned %v (%T), want a native error", native, native)
			}
			err := tc.call(client)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("over ttrpc: %v, code %v, want %v", err, got, tc.code)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("over ttrpc: message %q, want it to hold %q", status.Convert(err).Message(), tc.msg)
			}
		})
	}
}
