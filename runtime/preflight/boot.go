package preflight

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// Boot probe limits: one small guest, given a generous time to boot.
const (
	bootProbeMemoryMiB = 256
	bootProbeTimeout   = 30 * time.Second
	bootProbePort      = 1024
)

// Boot starts one sandbox's VM exactly as the shim does (boxlite-vmm with
// the default kernel, the guest agent as its workload, the agent reached
// through libkrun's vsock bridge), asks the agent which kernel it runs on,
// and stops it. It says plainly whether a guest booted. Through the libkrun
// test double the agent answers from the host: that is reported as "no guest
// booted", never as a pass. It needs a loadable libkrun, a usable /dev/kvm
// and the default kernel; the caller passes what the earlier checks found.
func Boot(cfg *config.Config, lib LibkrunInfo, kvmOK bool, kernels []KernelRow) Result {
	r := Result{Name: "boot"}
	var def *KernelRow
	for i := range kernels {
		if kernels[i].Default {
			def = &kernels[i]
		}
	}
	switch {
	case !lib.Usable():
		r.Status, r.Detail = Skip, "needs a loadable libkrun (see the libkrun line)"
		return r
	case !kvmOK && !lib.TestDouble:
		r.Status, r.Detail = Skip, "needs a usable /dev/kvm (see the kvm line)"
		return r
	case def == nil || def.Err != nil:
		r.Status, r.Detail = Skip, "needs the default kernel (see the kernel lines)"
		return r
	}

	info, took, err := bootProbe(cfg, def.Source)
	switch {
	case err != nil:
		r.Status = Fail
		r.Detail = fmt.Sprintf("a guest with the %s kernel did not boot: %v", def.Name, err)
		r.Fix = "guests cannot boot on this host; see the VMM and console logs quoted above"
		if _, statErr := os.Stat(pvmModule); statErr == nil {
			r.Fix = "this host's KVM is PVM (kvm_pvm), which boots only PVM-enabled guest kernels: run boxlite on bare metal or a VM with VT-x/AMD-V nesting"
		}
	case info.OnHost:
		r.Status = Fail
		r.Detail = fmt.Sprintf("no guest booted: the libkrun test double ran the agent as a host process (it answered from %q, kernel %s), so this says nothing about guests on this host", info.Environment, info.KernelRelease)
		r.Fix = "run check with a real libkrun to learn whether guests boot here"
	default:
		r.Status = Pass
		r.Detail = fmt.Sprintf("a guest booted the %s kernel (%s) and its agent answered in %s", def.Name, info.KernelRelease, took.Round(time.Millisecond))
	}
	return r
}

// bootProbe runs the probe sandbox in a temporary directory it removes.
func bootProbe(cfg *config.Config, k kernel.Source) (_ *agentInfo, took time.Duration, retErr error) {
	agentBin, err := vmm.BesideShim("boxlite-agent")
	if err != nil {
		return nil, 0, err
	}
	dir, err := os.MkdirTemp("", "boxlite-check-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, 0, err
	}
	if err := copyFile(agentBin, filepath.Join(root, "boxlite-agent"), 0o755); err != nil {
		return nil, 0, fmt.Errorf("staging the agent (install boxlite-agent beside the shim: make agent): %w", err)
	}
	if err := reaper.SetSubreaper(); err != nil {
		return nil, 0, err
	}
	r := reaper.New()
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), bootProbeTimeout+10*time.Second)
	defer cancel()
	start := time.Now()
	v, err := vmm.Start(ctx, vmm.Config{
		ID:           "boot-probe",
		StateDir:     filepath.Join(dir, "vm"),
		RootDir:      root,
		Kernel:       k,
		LibkrunPath:  cfg.LibkrunPath,
		CPUs:         1,
		MemoryMiB:    bootProbeMemoryMiB,
		AgentPort:    bootProbePort,
		Workload:     []string{"/boxlite-agent", fmt.Sprintf("-vsock-port=%d", bootProbePort)},
		ReadyTimeout: bootProbeTimeout,
	}, r)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err := v.Stop(context.WithoutCancel(ctx)); err != nil && retErr == nil {
			retErr = err
		}
	}()
	c, err := agent.Dial(ctx, v.AgentSocket())
	if err != nil {
		return nil, 0, fmt.Errorf("dialing the agent: %w", err)
	}
	defer c.Close()
	resp, err := c.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("asking the agent: %w", err)
	}
	took = time.Since(start)
	// A clean shutdown lets the agent remove what it made (its cgroup).
	_ = c.Shutdown(ctx)
	return &agentInfo{OnHost: resp.OnHost, Environment: resp.Environment, KernelRelease: resp.KernelRelease}, took, nil
}

type agentInfo struct {
	OnHost        bool
	Environment   string
	KernelRelease string
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
