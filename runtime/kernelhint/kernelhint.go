// Package kernelhint recognises, in the end of a failed container's output,
// the error that iptables prints when the guest kernel lacks xtables (legacy
// iptables' tables, or the nft_compat matches and targets iptables-nft
// needs), and phrases the hint the shim logs: the net kernel has them, and
// how a pod asks for it. dockerd fails that way on the lean kernel.
//
// It keeps and reads a copy of the output (Tail) and kernel facts handed to
// it; it must not change a container's output, exit status or kernel, nor
// guess: Hint gives a hint only when the output says so and the kernel is
// known to lack legacy iptables.
package kernelhint

import (
	"bytes"
	"fmt"
	"regexp"
	"sync"

	"github.com/boxlite/boxlite-shim/kernel"
)

// TailSize is how much of a container's last output Tail keeps: enough for
// dockerd's last error lines.
const TailSize = 16 << 10

// Tail is an io.Writer that keeps the last max bytes written to it, in a
// ring: each write costs its own length, whatever was written before. It is
// safe for concurrent use (a container's stdout and stderr copy into one).
type Tail struct {
	mu   sync.Mutex
	buf  []byte // len max once full
	next int    // where the next byte goes, once full
	max  int
}

// NewTail keeps the last max bytes.
func NewTail(max int) *Tail { return &Tail{max: max} }

// Write keeps the end of p; it never fails.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	if room := t.max - len(t.buf); room > 0 {
		k := min(room, len(p))
		t.buf = append(t.buf, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(t.buf[t.next:], p)
		t.next = (t.next + k) % t.max
		p = p[k:]
	}
	return n, nil
}

// Bytes is a copy of what the tail holds, oldest first.
func (t *Tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[t.next:]...)
	return append(out, t.buf[:t.next]...)
}

// missingXtables are iptables' messages (iptables 1.8, legacy and nft
// backends, ip6tables alike) for a kernel without the xtables part a command
// needs: legacy tables (ip_tables, ip6_tables), an xt match or target, or
// nft_compat, whose missing expression types make the kernel answer a rule
// with ENOENT.
var missingXtables = []*regexp.Regexp{
	regexp.MustCompile(`ip6?tables.*can't initialize ip6?tables table .*Table does not exist`),
	regexp.MustCompile(`ip6?tables.*\(nf_tables\):.*RULE_(APPEND|INSERT|REPLACE) failed \(No such file or directory\)`),
	regexp.MustCompile(`ip6?tables.*Couldn't load (match|target) .*No such file or directory`),
	regexp.MustCompile(`ip6?tables.*Extension \S+ revision \d+ not supported, missing kernel module`),
}

// IptablesError is the last line of output that is iptables failing for
// want of xtables in the kernel, or "".
func IptablesError(output []byte) string {
	lines := bytes.Split(output, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		for _, re := range missingXtables {
			if re.Match(lines[i]) {
				return string(bytes.TrimSpace(lines[i]))
			}
		}
	}
	return ""
}

// Hint is what the shim logs for container id, which exited with a
// non-zero status after output ending in output, in a sandbox booted with
// kernel variant v whose kernel's features are f (kernel.Inspect): "" unless
// the output holds iptables' missing-xtables error, f says the kernel has no
// legacy iptables, and v is not the net kernel (which has xtables).
func Hint(id string, v kernel.Name, f kernel.Features, output []byte) string {
	if v == kernel.Net || f.IPTables != kernel.No {
		return ""
	}
	line := IptablesError(output)
	if line == "" {
		return ""
	}
	return fmt.Sprintf("container %s failed after iptables found no kernel support (%q): the sandbox's %s kernel has no xtables "+
		"(legacy iptables, the xt matches and targets iptables-nft uses), which iptables and dockerd need: "+
		"use the net kernel (the RuntimeClass boxlite-net, or the annotation %s=%s where the handler's config enables it)",
		id, line, v, kernel.Annotation, kernel.Net)
}
