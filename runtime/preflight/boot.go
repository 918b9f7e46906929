package preflight

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/reaper"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

// bootProbeTimeout bounds the whole probe: boot, one call, stop.
const bootProbeTimeout = 40 * time.Second

// Boot starts one sandbox's VM exactly as the shim does (package sandbox:
// boxlite-vmm with the default kernel, the guest agent as its workload,
// reached through libkrun's vsock bridge), asks the agent which kernel it runs on,
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
		r.Status, r.Detail = Skip, "needs a usable libkrun (see the libkrun line)"
		return r
	case !kvmOK && !lib.TestDouble:
		r.Status, r.Detail = Skip, "needs a usable /dev/kvm (see the kvm line)"
		return r
	case def == nil || def.Err != nil:
		r.Status, r.Detail = Skip, "needs the default kernel (see the kernel lines)"
		return r
	}

	info, took, err := bootProbe(cfg)
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

// bootProbe boots the probe sandbox through package sandbox, the shim's own
// path, with its state in a temporary directory it removes.
func bootProbe(cfg *config.Config) (_ *agentInfo, took time.Duration, retErr error) {
	dir, err := os.MkdirTemp("", "boxlite-check-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	probeCfg := *cfg
	probeCfg.StateDir = dir
	if err := reaper.SetSubreaper(); err != nil {
		return nil, 0, err
	}
	r := reaper.New()
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), bootProbeTimeout)
	defer cancel()
	start := time.Now()
	req, err := probeCfg.Request(nil) // the default kernel and size
	if err != nil {
		return nil, 0, err
	}
	sb, err := sandbox.Prepare(ctx, sandbox.Options{Namespace: "check", ID: "boot-probe", Config: &probeCfg, Request: req, Reaper: r})
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err := sb.Stop(context.WithoutCancel(ctx)); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if err := sb.Boot(ctx); err != nil {
		return nil, 0, err
	}
	resp, err := sb.Agent().Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("asking the agent: %w", err)
	}
	return &agentInfo{OnHost: resp.OnHost, Environment: resp.Environment, KernelRelease: resp.KernelRelease}, time.Since(start), nil
}

type agentInfo struct {
	OnHost        bool
	Environment   string
	KernelRelease string
}
