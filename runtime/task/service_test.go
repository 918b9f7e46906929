package task

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newTestService(t *testing.T) (*service, shutdown.Service) {
	t.Helper()
	ctx, sd := shutdown.WithShutdown(namespaces.WithNamespace(context.Background(), "test"))
	ts, err := NewTaskService(ctx, &recorder{}, sd)
	if err != nil {
		t.Fatal(err)
	}
	return ts.(*service), sd
}

// Every RPC on an unknown task returns a native NotFound, which reaches
// containerd as codes.NotFound.
func TestUnknownTask(t *testing.T) {
	s, _ := newTestService(t)
	client := newTestClient(t, s)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	type api = taskAPI.TTRPCTaskService
	calls := map[string]func(api) error{
		"State":  func(a api) error { _, err := a.State(ctx, &taskAPI.StateRequest{ID: "x"}); return err },
		"Start":  func(a api) error { _, err := a.Start(ctx, &taskAPI.StartRequest{ID: "x"}); return err },
		"Delete": func(a api) error { _, err := a.Delete(ctx, &taskAPI.DeleteRequest{ID: "x"}); return err },
		"Kill":   func(a api) error { _, err := a.Kill(ctx, &taskAPI.KillRequest{ID: "x", Signal: 9}); return err },
		"Wait":   func(a api) error { _, err := a.Wait(ctx, &taskAPI.WaitRequest{ID: "x"}); return err },
		"Pids":   func(a api) error { _, err := a.Pids(ctx, &taskAPI.PidsRequest{ID: "x"}); return err },
		"Stats":  func(a api) error { _, err := a.Stats(ctx, &taskAPI.StatsRequest{ID: "x"}); return err },
		"Pause":  func(a api) error { _, err := a.Pause(ctx, &taskAPI.PauseRequest{ID: "x"}); return err },
		"Resume": func(a api) error { _, err := a.Resume(ctx, &taskAPI.ResumeRequest{ID: "x"}); return err },
		"Exec": func(a api) error {
			_, err := a.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "x", ExecID: "e"})
			return err
		},
		"Update": func(a api) error { _, err := a.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "x"}); return err },
		"CloseIO": func(a api) error {
			_, err := a.CloseIO(ctx, &taskAPI.CloseIORequest{ID: "x", Stdin: true})
			return err
		},
		"ResizePty": func(a api) error {
			_, err := a.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: "x", Width: 80, Height: 24})
			return err
		},
	}
	for name, call := range calls {
		if err := call(s); !errdefs.IsNotFound(err) {
			t.Errorf("%s of an unknown task: %v, want NotFound", name, err)
		}
		if err := call(client); status.Code(err) != codes.NotFound {
			t.Errorf("%s of an unknown task over ttrpc: %v, want codes.NotFound", name, err)
		}
	}
	_, err := client.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: "x"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Checkpoint: %v, want codes.Unimplemented", err)
	}
	resp, err := client.Connect(ctx, &taskAPI.ConnectRequest{ID: "x"})
	if err != nil || resp.ShimPid != uint32(os.Getpid()) {
		t.Errorf("Connect: %v %v", resp, err)
	}
}

// A Create the shim refuses answers a clear error that is never
// Unimplemented, leaves nothing behind, and the shim then shuts down.
func TestCreateRefusedLeavesNothing(t *testing.T) {
	s, sd := newTestService(t)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"true"}},
		Annotations: map[string]string{"io.boxlite.kernel": "bogus"}}
	b, _ := json.Marshal(&spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	err := createT1(t, newTestClient(t, s), bundle, state, filepath.Join(dir, "cache"))
	if code := status.Code(err); err == nil || code != codes.InvalidArgument {
		t.Fatalf("Create with kernel=bogus: %v (code %v), want InvalidArgument", err, code)
	}
	ents, _ := os.ReadDir(bundle)
	if len(ents) != 1 {
		t.Errorf("bundle holds more than config.json: %v", ents)
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("state left: %v", ents)
	}
	if _, err := s.Shutdown(namespaces.WithNamespace(context.Background(), "test"), &taskAPI.ShutdownRequest{ID: "t1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sd.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not shut down with no task")
	}
}

// A bundle whose config.json is missing or malformed is refused with an
// error that names the file, and nothing is made.
func TestCreateBadBundle(t *testing.T) {
	cases := []struct {
		name   string
		config []byte // nil: no config.json at all
	}{
		{"missing", nil},
		{"empty", []byte{}},
		{"not-json", []byte("{this is not json")},
		{"wrong-type", []byte(`{"ociVersion": 3, "process": "sh"}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestService(t)
			dir := t.TempDir()
			bundle, state := filepath.Join(dir, "bundle"), filepath.Join(dir, "state")
			if err := os.MkdirAll(bundle, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.config != nil {
				if err := os.WriteFile(filepath.Join(bundle, "config.json"), tc.config, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := createT1(t, newTestClient(t, s), bundle, state, filepath.Join(dir, "cache"))
			if err == nil || status.Code(err) == codes.Unimplemented || !strings.Contains(err.Error(), "config.json") {
				t.Fatalf("Create: %v, want an error naming config.json", err)
			}
			if ents, _ := os.ReadDir(state); len(ents) != 0 {
				t.Errorf("state left: %v", ents)
			}
		})
	}
}

// createT1 asks the task API (over ttrpc, as containerd does) to create
// task "t1" from bundle, with a shim config (as CRI's runtime options) that
// sets only the state and cache directories.
func createT1(t *testing.T, api taskAPI.TTRPCTaskService, bundle, state, cache string) error {
	t.Helper()
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigBody: []byte("state_dir = \"" + state + "\"\ncache_dir = \"" + cache + "\"\n")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	_, err = api.Create(ctx, &taskAPI.CreateTaskRequest{ID: "t1", Bundle: bundle, Options: opts})
	return err
}
