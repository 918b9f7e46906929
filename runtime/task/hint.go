package task

import (
	"context"
	"io"

	"github.com/containerd/log"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/runtime/agent"
	"github.com/boxlite/boxlite-shim/runtime/kernelhint"
	"github.com/boxlite/boxlite-shim/runtime/sandbox"
)

// withTail is pio with its stdout and stderr also copied into a fresh tail
// (kernelhint.Tail): the end of a container init's output, which
// kernelHint reads after the init exits.
func withTail(pio agent.IO) (agent.IO, *kernelhint.Tail) {
	tail := kernelhint.NewTail(kernelhint.TailSize)
	if pio.Stdout != nil {
		pio.Stdout = io.MultiWriter(pio.Stdout, tail)
	}
	if pio.Stderr != nil {
		pio.Stderr = io.MultiWriter(pio.Stderr, tail)
	}
	return pio, tail
}

// kernelHint logs kernelhint's hint for a container init that exited with
// a non-zero status in sb, if its output ends in iptables' error for a
// kernel without xtables and sb's kernel is known to lack them (dockerd on
// the lean kernel): which kernel to use, and how to ask for it.
func kernelHint(ctx context.Context, sb *sandbox.Sandbox, p *process, status uint32) {
	if sb == nil || p.tail == nil || status == 0 {
		return
	}
	out := p.tail.Bytes()
	if kernelhint.IptablesError(out) == "" {
		return
	}
	f, err := kernel.Inspect(sb.Kernel.Path)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", p.containerID).Debug("kernel hint: inspecting the sandbox's kernel")
		return
	}
	if h := kernelhint.Hint(p.containerID, sb.Kernel.Name, f, out); h != "" {
		log.G(ctx).WithField("id", p.containerID).WithField("sandbox", sb.ID).WithField("kernel", sb.Kernel.Name).Warn(h)
	}
}
