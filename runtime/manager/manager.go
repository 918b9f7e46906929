// Package manager owns the shim binary's life cycle as containerd drives it:
// `start` (spawn or reuse the shim daemon of a sandbox and answer the
// bootstrap protocol), `delete` (clean up after a shim that is gone) and
// `-info`. It must not run containers itself; the daemon's task service does.
package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	// Registers the type URLs of the OCI types -info marshals (Features).
	_ "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/runtime/guest/jail"
	"github.com/boxlite/boxlite-shim/runtime/guest/seccomp"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/runtime/version"
)

// New returns the shim manager for the runtime called name.
func New(name string) shim.Shim {
	return &manager{name: name}
}

type manager struct {
	name string
}

func (m *manager) Name() string { return m.name }

// bundleSpec is the part of the bundle's config.json the manager reads.
type bundleSpec struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

func readBundleSpec(dir string) (*bundleSpec, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle spec: %w", err)
	}
	var s bundleSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse bundle spec %s: %w: %w", filepath.Join(dir, "config.json"), err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// GroupID is the key that decides which shim (and VM) a container joins: the
// pod's sandbox id under CRI, else the task's own id.
func GroupID(id string, annotations map[string]string) string {
	if g := annotations[config.AnnotationSandboxID]; g != "" {
		return g
	}
	return id
}

// Start spawns the shim daemon for the task's group, or returns the address of
// the group's daemon when it already answers.
func (m *manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"}
	id := params.GetInstanceID()

	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	spec, err := readBundleSpec(cwd)
	if err != nil {
		return nil, err
	}
	group := GroupID(id, spec.Annotations)

	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	address, err := shim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), group, false)
	if err != nil {
		return nil, err
	}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			// The pod's shim already runs: this container joins it.
			result.Address = address
			return result, nil
		}
		if err := shim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	f, err := socket.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()

	cmd, err := daemonCommand(ctx, id, params)
	if err != nil {
		return nil, err
	}
	cmd.Dir = cwd
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim daemon: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
		}
	}()
	// This `start` process exits right after answering; the daemon is
	// reparented and its exit collected by containerd's reaper then.
	go func() { _ = cmd.Wait() }()

	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		return nil, fmt.Errorf("adjust OOM score of shim daemon: %w", err)
	}
	result.Address = address
	return result, nil
}

func daemonCommand(ctx context.Context, id string, params *bootapi.BootstrapParams) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop is `delete`: containerd runs it after the shim daemon is gone. It must
// be safe to run twice.
func (m *manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, err
	}
	bundle := filepath.Join(filepath.Dir(cwd), id)
	// The sandbox's VMM outlives a crashed shim: kill its process group,
	// unmount and remove what the sandbox left (see sandbox.Cleanup).
	if err := sandbox.Cleanup(ctx, bundle); err != nil {
		log.G(ctx).WithError(err).Warn("failed to clean up the sandbox")
	}
	// The dead shim's socket, unless something answers on it again.
	if address, err := shim.ReadAddress(filepath.Join(bundle, "address")); err == nil && !shim.CanConnect(address) {
		_ = shim.RemoveSocket(address)
	}
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).Warn("failed to clean up rootfs mount")
	}
	return shim.StopStatus{
		ExitedAt:   time.Now(),
		ExitStatus: 128 + int(unix.SIGKILL),
	}, nil
}

// Info reports the shim's name, version, the runtime options it was given and
// the annotations it understands.
func (m *manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	info := &types.RuntimeInfo{
		Name: m.name,
		Version: &types.RuntimeVersion{
			Version:  version.Version,
			Revision: version.Revision,
		},
		Annotations: map[string]string{},
	}
	opts, err := readOptions(optionsR)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadFromOptions(opts)
	if err != nil {
		return nil, err
	}
	if opts != nil {
		info.Options, err = typeurl.MarshalAnyToProto(opts)
		if err != nil {
			return nil, err
		}
	}
	known := map[string]string{}
	for _, a := range config.KnownAnnotations() {
		info.Annotations[a] = "understood"
		known[a] = "understood"
	}
	enabled := append([]string(nil), cfg.Annotations.Enabled...)
	sort.Strings(enabled)
	info.Annotations["io.boxlite.annotations.enabled"] = joinStrings(enabled)
	info.Annotations["io.boxlite.kernels.embedded"] = joinNames(kernel.Embedded())
	info.Annotations["io.boxlite.kernels.available"] = joinNames(kernel.Available(cfg.KernelPolicy()))
	info.Annotations["io.boxlite.kernel.default"] = string(cfg.Kernel.Default)

	// What the guest applies: containerd's CRI reads MountOptions ("rro"
	// enables recursive read-only mounts).
	enabledTrue := true
	feat := &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: "1.2.1",
		Annotations:   known,
		MountOptions:  jail.MountOptions(),
		Linux: &features.Linux{
			Seccomp: &features.Seccomp{
				Enabled:        &enabledTrue,
				Actions:        seccomp.Actions(),
				Operators:      seccomp.Operators(),
				Archs:          seccomp.Archs(),
				KnownFlags:     seccomp.Flags(),
				SupportedFlags: seccomp.Flags(),
			},
		},
	}
	info.Features, err = typeurl.MarshalAnyToProto(feat)
	if err != nil {
		return nil, err
	}
	return info, nil
}

func readOptions(r io.Reader) (typeurl.Any, error) {
	if r == nil {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read runtime options: %w", err)
	}
	if len(data) == 0 {
		return nil, nil
	}
	var a anypb.Any
	if err := proto.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("decode runtime options: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return &a, nil
}

func joinNames(names []kernel.Name) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return joinStrings(s)
}

func joinStrings(s []string) string { return strings.Join(s, ",") }
