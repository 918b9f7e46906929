// Command bench measures containerd-shim-boxlite-v2 against runc on one
// private containerd 2.4 (test/ctrd, with CRI: test/crid) in one run, prints a table and writes
// the figures as JSON:
//
//   - cold start: `ctr run --rm IMG ID /bin/true`, boxlite and runc;
//   - exec latency: `ctr task exec ID /bin/true` on a running task;
//   - CRI pod start to first log line: `crictl runp`, `create` and `start`
//     of a container that echoes a line, until the line is in its CRI log
//     file, with the boxlite and runc RuntimeClass handlers (test/crid);
//   - memory: VmRSS of the shim, the VMM and the guest agent of idle
//     sandboxes, and of runc's shim;
//   - density: N containers started at once with `ctr run -d`, the wall time
//     until all run, and the failures;
//   - kernel extraction: kernel.Extract of each embedded variant into an
//     empty cache (cold) and into a cache that holds it (warm, which verifies
//     its SHA-256, as every sandbox start does);
//   - guest boot under emulation: for the lean and the net kernel, a real
//     guest booted on the emulated engine (test/libkrun-qemu, QEMU TCG),
//     split into VMM start, kernel entry, init, agent ready and container
//     started. TCG figures: not comparable with KVM, no runc ratio.
//
// -sections picks some of them (kernel, cold, exec, cri, memory, density,
// emulation; default all), e.g. -sections emulation.
//
// Where no guest can boot, every boxlite figure is the shim + VMM process +
// guest agent path through the libkrun test double (bin/test/libkrun.so.1):
// no VM runs, the agent is a host process. runc is the deps cache's runc
// driven by containerd's own containerd-shim-runc-v2 (io.containerd.runc.v2).
//
// Run it as root after `make KERNELS="lean net" build testbins`:
//
//	go run -tags 'kernel_lean kernel_net' ./test/bench -out bench.json
//
// It refuses to start while any shim, VMM or agent process of ours runs, and
// removes everything it made (containers, tasks, containerd, directories)
// before it exits, then checks that no process, mount or socket is left.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
)

const (
	// ns is the containerd namespace test/ctrd's ctr commands use.
	ns = "boxlite-test"
	// runtimeName is how ctr names the shim.
	runtimeName = "io.boxlite.v2"
	// doubleLabel qualifies every boxlite figure measured here.
	doubleLabel = "shim+VMM+agent path via libkrun test double, no VM"
)

// Runtimes compared.
const (
	boxlite = "boxlite"
	runc    = "runc"
)

// options are the command-line flags.
type options struct {
	out         string
	reps        int
	idle        int
	density     []int
	densityReps int
	kernelReps  int
	opTimeout   time.Duration
	wait        time.Duration
	emuReps     int
	sections    map[string]bool
}

// sectionNames are the bench's sections, in the order they run.
var sectionNames = []string{"kernel", "cold", "exec", "cri", "memory", "density", "emulation"}

// parseSections reads -sections: "all" or a comma-separated list of
// sectionNames.
func parseSections(v string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "all":
			for _, n := range sectionNames {
				out[n] = true
			}
		case slices.Contains(sectionNames, f):
			out[f] = true
		default:
			return nil, fmt.Errorf("-sections: %q is not one of all, %s", f, strings.Join(sectionNames, ", "))
		}
	}
	return out, nil
}

func parseFlags() options {
	var o options
	var density, sections string
	flag.StringVar(&o.out, "out", "bench.json", "write the figures as JSON to this file")
	flag.IntVar(&o.reps, "reps", 20, "repeated runs of each cold start and exec latency figure (after one unrecorded warm-up)")
	flag.IntVar(&o.idle, "idle", 10, "idle sandboxes (and runc containers) whose memory is read")
	flag.StringVar(&density, "density", "1,10,50", "comma-separated numbers of containers started at once")
	flag.IntVar(&o.densityReps, "density-reps", 5, "repeated runs of each density figure")
	flag.IntVar(&o.kernelReps, "kernel-reps", 10, "repeated extractions of each embedded kernel, cold and warm")
	flag.DurationVar(&o.opTimeout, "op-timeout", 2*time.Minute, "limit of one ctr command")
	flag.DurationVar(&o.wait, "wait", 0, "wait up to this long for shim, VMM and agent processes of others (a test run) to end before refusing to start")
	flag.IntVar(&o.emuReps, "emu-reps", 3, "guests booted on the emulated engine per kernel variant (section emulation)")
	flag.StringVar(&sections, "sections", "all", "comma-separated sections to run: all, or of "+strings.Join(sectionNames, ", "))
	flag.Parse()
	var err error
	if o.sections, err = parseSections(sections); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	for _, f := range strings.Split(density, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -density: %q is not a positive number\n", f)
			os.Exit(2)
		}
		o.density = append(o.density, n)
	}
	if o.reps < 1 || o.idle < 1 || o.densityReps < 1 || o.kernelReps < 1 || o.emuReps < 1 {
		fmt.Fprintln(os.Stderr, "bench: -reps, -idle, -density-reps, -kernel-reps and -emu-reps must be at least 1")
		os.Exit(2)
	}
	return o
}

// Row is one line of the table.
type Row struct {
	Figure  string   `json:"figure"`
	Runtime string   `json:"runtime,omitempty"`
	Label   string   `json:"label,omitempty"`
	Unit    string   `json:"unit,omitempty"`
	Summary *Summary `json:"summary,omitempty"`
	// Failures counts attempts that did not succeed, of Attempts.
	Failures *int `json:"failures,omitempty"`
	Attempts int  `json:"attempts,omitempty"`
	// RatioToRunc is this row's median over runc's for the same figure.
	RatioToRunc float64 `json:"ratio_to_runc,omitempty"`
	Target      string  `json:"target,omitempty"`
	TargetMet   *bool   `json:"target_met,omitempty"`
	NotMeasured string  `json:"not_measured,omitempty"`
	Note        string  `json:"note,omitempty"`
}

// Report is the JSON file.
type Report struct {
	Started   time.Time         `json:"started"`
	Seconds   float64           `json:"seconds"`
	Host      map[string]string `json:"host"`
	Flags     map[string]string `json:"flags"`
	Rows      []Row             `json:"rows"`
	Errors    []string          `json:"errors,omitempty"`
	Leftovers []string          `json:"leftovers,omitempty"`
}

func main() {
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

// run does the whole bench and returns the exit status: 0 when every figure
// was measured (failures counted in a density figure are results, not
// errors) and nothing was left behind.
func run(ctx context.Context, o options) (code int) {
	h := &harness{log: os.Stderr}
	rep := &Report{Started: time.Now().UTC(), Host: map[string]string{}, Flags: map[string]string{}}
	flag.VisitAll(func(f *flag.Flag) { rep.Flags[f.Name] = f.Value.String() })
	b := &bench{h: h, o: o, rep: rep, live: map[string]bool{}, nsCgroupsBefore: namespaceCgroups()}
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			b.errorf("aborted: %s", a.msg)
		}
		b.cleanup()
		h.runCleanups()
		b.removeNamespaceCgroups()
		rep.Errors = append(rep.Errors, h.errs...)
		rep.Leftovers = b.leftovers()
		rep.Seconds = time.Since(rep.Started).Seconds()
		rep.Host["loadavg_after"] = loadavg()
		printTable(os.Stdout, rep)
		if err := writeJSON(o.out, rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
		if len(rep.Errors) > 0 || len(rep.Leftovers) > 0 {
			code = 1
		}
	}()

	if os.Geteuid() != 0 {
		h.Fatal("the bench needs root (containerd, mounts, namespaces)")
	}
	// The test suites check the whole host for our processes, as the bench
	// does: take turns with them.
	defer ctrd.LockSuites()()
	if left := waitIdle(ctx, o.wait); len(left) > 0 {
		h.Fatalf("processes of ours are already running, so the figures would be wrong and cleanup would be ambiguous: %+v (stop them first)", left)
	}
	if left := boxliteMounts(); len(left) > 0 {
		h.Fatalf("container mounts of a boxlite sandbox are already on this host: %v", left)
	}
	b.setup()
	if o.sections["kernel"] {
		b.kernelExtraction()
	}
	sections := []struct {
		name string
		run  func(context.Context)
	}{
		{"cold", b.coldStart}, {"exec", b.execLatency}, {"cri", b.criFirstLog},
		{"memory", b.memory}, {"density", b.density}, {"emulation", b.emulation},
	}
	started := false
	for _, s := range sections {
		if ctx.Err() != nil {
			break
		}
		if !o.sections[s.name] {
			continue
		}
		if !started {
			b.startDaemon()
			started = true
		}
		s.run(ctx)
	}
	if ctx.Err() != nil {
		b.errorf("interrupted: the figures are partial")
	}
	return 0
}

// waitIdle waits up to d for every process of ours (shim, VMM, agent) to
// end, and returns those still there.
func waitIdle(ctx context.Context, d time.Duration) []ctrd.Process {
	deadline := time.Now().Add(d)
	for {
		left := ctrd.OurProcesses()
		if len(left) == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			return left
		}
		time.Sleep(time.Second)
	}
}

func writeJSON(path string, rep *Report) error {
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(j, '\n'), 0o644)
}

// bench is one run: a private containerd, the busybox image, a shim config
// on the test double.
type bench struct {
	h    *harness
	o    options
	rep  *Report
	bin  string // the shim's bin/
	dir  string // the bench's own temporary directory: configs, shim state and cache
	cfg  string // the shim's config file (the test double)
	runc string // runc of the deps cache
	d    *ctrd.Daemon
	cri  *crid.Env // the CRI environment whose daemon d is, when the cri section runs
	img  string
	seq  int
	live map[string]bool // containers created and not yet removed
	ids  []string        // every container name used
	// nsCgroupsBefore are the cgroups named after the containerd namespaces
	// that existed before the bench (runc's containers live below them).
	nsCgroupsBefore map[string]bool
	// stateDir is the state_dir of the shim configs.
	stateDir string
}

func (b *bench) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.rep.Errors = append(b.rep.Errors, msg)
	fmt.Fprintln(os.Stderr, "bench: error:", msg)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// add adds a row; a boxlite row without a label of its own is the test
// double's.
func (b *bench) add(r Row) {
	if r.Runtime == boxlite && r.Label == "" {
		r.Label = doubleLabel
	}
	b.rep.Rows = append(b.rep.Rows, r)
}

// setup checks the build products and writes the shim's configuration.
func (b *bench) setup() {
	h := b.h
	b.bin = ctrd.BinDir(h)
	deps := filepath.Join(ctrd.Deps(), "bin")
	b.runc = filepath.Join(deps, "runc")
	double := filepath.Join(b.bin, "test", "libkrun.so.1")
	ctrd.Require(h, b.runc, filepath.Join(deps, "containerd-shim-runc-v2"),
		filepath.Join(b.bin, "boxlite-vmm"), filepath.Join(b.bin, "boxlite-agent"),
		filepath.Join(ctrd.Deps(), "busybox", "busybox"))
	if b.o.sections["cold"] || b.o.sections["exec"] || b.o.sections["cri"] || b.o.sections["memory"] || b.o.sections["density"] {
		ctrd.Require(h, double)
	}
	double, _ = filepath.Abs(double)
	dir, err := os.MkdirTemp("", "bxb") // short: agent sockets live under it
	if err != nil {
		h.Fatal(err)
	}
	b.dir = dir
	h.Cleanup(func() {
		for _, m := range ctrd.MountsUnder(dir) {
			_ = exec.Command("umount", "-l", m).Run()
		}
		if err := os.RemoveAll(dir); err != nil {
			h.Errorf("remove %s: %v", dir, err)
		}
	})
	b.cfg = filepath.Join(dir, "shim.toml")
	b.stateDir = filepath.Join(dir, "st")
	body := fmt.Sprintf("libkrun_path = %q\nstate_dir = %q\ncache_dir = %q\n", double, b.stateDir, filepath.Join(dir, "cache"))
	if err := os.WriteFile(b.cfg, []byte(body), 0o644); err != nil {
		h.Fatal(err)
	}
	b.rep.Host["loadavg_before"] = loadavg()
	b.rep.Host["cpus"] = strconv.Itoa(runtime.NumCPU())
	b.rep.Host["kernel"] = firstLine(exec.Command("uname", "-r").Output())
	b.rep.Host["containerd"] = firstLine(exec.Command(filepath.Join(deps, "containerd"), "--version").Output())
	b.rep.Host["runc"] = firstLine(exec.Command(b.runc, "--version").Output())
	b.rep.Host["shim"] = shimVersion(filepath.Join(b.bin, "containerd-shim-boxlite-v2"))
	b.rep.Host["go"] = runtime.Version()
}

// loadavg is the 1, 5 and 15 minute load averages: other work on the
// machine during the bench shows here.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// shimVersion is the Version and Embedded kernels lines of `shim -v`.
func shimVersion(shim string) string {
	out, err := exec.Command(shim, "-v").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var parts []string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "Version" || k == "Embedded kernels") {
			parts = append(parts, strings.ToLower(k)+" "+strings.TrimSpace(v))
		}
	}
	return strings.Join(parts, ", ")
}

func firstLine(out []byte, err error) string {
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

// startDaemon starts the private containerd, with CRI when the cri section
// runs (test/crid: the boxlite drop-in, a CNI network, the pause and busybox
// images in CRI's namespace, and a "runc" handler on the deps cache's runc),
// and imports the busybox image for ctr.
func (b *bench) startDaemon() {
	if b.o.sections["cri"] {
		b.logf("starting a private containerd with CRI")
		b.cri = crid.New(b.h, crid.Options{ExtraCRIConfig: fmt.Sprintf(`
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    BinaryName = %q
`, b.runc)})
		b.d = b.cri.D
	} else {
		b.logf("starting a private containerd")
		b.d = ctrd.Start(b.h, ctrd.Options{})
	}
	archive := filepath.Join(b.dir, "busybox-oci.tar")
	if err := ocitest.BusyboxImage(filepath.Join(ctrd.Deps(), "busybox", "busybox"), archive, ocitest.ImageName); err != nil {
		b.h.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.opTimeout)
	defer cancel()
	if out, err := b.d.Ctr(ctx, "image", "import", archive); err != nil {
		b.h.Fatalf("ctr image import: %v\n%s", err, out)
	}
	b.img = ocitest.ImageName
}

// newID names a container of runtime rt for a figure.
func (b *bench) newID(rt, what string) string {
	b.seq++
	p := "bx"
	if rt == runc {
		p = "rc"
	}
	id := fmt.Sprintf("%s-%s-%d", p, what, b.seq)
	b.ids = append(b.ids, id)
	return id
}

// runArgs are `ctr run` arguments for runtime rt.
func (b *bench) runArgs(rt string, extra ...string) []string {
	if rt == boxlite {
		return append([]string{"run", "--runtime", runtimeName, "--runtime-config-path", b.cfg}, extra...)
	}
	return append([]string{"run", "--runc-binary", b.runc}, extra...)
}

// ctr runs ctr within the per-command limit and returns its stdout; stderr
// is in the error. An interrupt (ctx) does not cut a command short: the
// steps stop starting new ones, and a ctr killed halfway could leave a
// container half made.
func (b *bench) ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.o.opTimeout)
	defer cancel()
	return b.d.CtrStdout(ctx, args...)
}

// timedCtr is ctr, timed.
func (b *bench) timedCtr(ctx context.Context, args ...string) (time.Duration, error) {
	t0 := time.Now()
	_, err := b.ctr(ctx, args...)
	return time.Since(t0), err
}

// start runs a detached, idle container of runtime rt.
func (b *bench) start(ctx context.Context, rt, id string) error {
	b.live[id] = true
	_, err := b.ctr(ctx, b.runArgs(rt, "-d", b.img, id, "sleep", "3600")...)
	return err
}

// remove kills and deletes a container's task and the container, however
// far it got. It uses its own context: it also runs after an interrupt.
func (b *bench) remove(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.o.opTimeout)
	defer cancel()
	_, _ = b.d.Ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
	_, _ = b.d.Ctr(ctx, "task", "delete", "-f", id)
	out, err := b.d.Ctr(ctx, "container", "delete", id)
	if err != nil && !strings.Contains(out, "not found") {
		return fmt.Errorf("ctr container delete %s: %v: %s", id, err, strings.TrimSpace(out))
	}
	delete(b.live, id)
	return nil
}

// removeAll removes ids, a few at a time.
func (b *bench) removeAll(ids []string) {
	type result struct {
		id  string
		err error
	}
	sem := make(chan struct{}, 4)
	res := make(chan result, len(ids))
	for _, id := range ids {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), b.o.opTimeout)
			defer cancel()
			_, _ = b.d.Ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
			_, _ = b.d.Ctr(ctx, "task", "delete", "-f", id)
			out, err := b.d.Ctr(ctx, "container", "delete", id)
			if err != nil && !strings.Contains(out, "not found") {
				err = fmt.Errorf("ctr container delete %s: %v: %s", id, err, strings.TrimSpace(out))
			} else {
				err = nil
			}
			res <- result{id, err}
		}()
	}
	for range ids {
		r := <-res
		if r.err != nil {
			b.errorf("%v", r.err)
		} else {
			delete(b.live, r.id)
		}
	}
}

// cleanup removes every container the bench made that is still there.
func (b *bench) cleanup() {
	if b.d == nil || len(b.live) == 0 {
		return
	}
	var ids []string
	for id := range b.live {
		ids = append(ids, id)
	}
	b.logf("removing %d containers left by an interrupted step", len(ids))
	b.removeAll(ids)
}

// leftovers is what the bench left behind after its cleanups: processes of
// ours (shim, VMM, agent, the emulated engine's helpers), runc shims of our
// containerd, container mounts, the test double's cgroups, and its
// directories with their sockets.
func (b *bench) leftovers() []string {
	var out []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := ctrd.OurProcesses()
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			out = append(out, fmt.Sprintf("processes: %+v", procs))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b.d != nil {
		for pid, p := range allProcs() {
			if p.Exe != "containerd-shim-runc-v2" && p.Exe != "containerd" {
				continue
			}
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(cmd), b.d.Dir) {
				out = append(out, fmt.Sprintf("process: %d %s", pid, p.Exe))
			}
		}
	}
	out = append(out, engineProcesses()...)
	out = append(out, boxliteMounts()...)
	for _, c := range ctrd.CgroupsLeft("boxlite-") {
		if filepath.Base(c) != ns { // namespace cgroups: below
			out = append(out, "cgroup: "+c)
		}
	}
	for c := range namespaceCgroups() {
		if !b.nsCgroupsBefore[c] {
			out = append(out, "cgroup: "+c)
		}
	}
	for _, dir := range []string{b.dir, daemonDir(b.d)} {
		if dir == "" {
			continue
		}
		for _, m := range ctrd.MountsUnder(dir) {
			out = append(out, "mount: "+m)
		}
		if _, err := os.Lstat(dir); err == nil {
			out = append(out, "directory: "+dir)
		}
	}
	return out
}

// namespaceCgroups lists the cgroup directories named after the containerd
// namespaces the bench uses (ctr's and CRI's), in every hierarchy: runc puts
// a container's cgroup at /<namespace>/<id> and removes only <id>.
func namespaceCgroups() map[string]bool {
	out := map[string]bool{}
	for _, n := range []string{ns, crid.Namespace} {
		for _, pat := range []string{"/sys/fs/cgroup/" + n, "/sys/fs/cgroup/*/" + n} {
			m, _ := filepath.Glob(pat)
			for _, d := range m {
				out[d] = true
			}
		}
	}
	return out
}

// removeNamespaceCgroups removes the namespace cgroups runc created during
// the bench (rmdir: only once empty).
func (b *bench) removeNamespaceCgroups() {
	// A container whose creation was cut short can leave its own (empty)
	// cgroup behind; only names the bench used are touched.
	for d := range namespaceCgroups() {
		for _, id := range b.ids {
			if err := os.Remove(filepath.Join(d, id)); err == nil {
				b.logf("removed the leftover cgroup %s", filepath.Join(d, id))
			}
		}
	}
	for d := range namespaceCgroups() {
		if !b.nsCgroupsBefore[d] {
			if err := os.Remove(d); err != nil {
				b.errorf("remove cgroup %s: %v", d, err)
			}
		}
	}
}

func daemonDir(d *ctrd.Daemon) string {
	if d == nil {
		return ""
	}
	return d.Dir
}

// boxliteMounts lists containers' root filesystems mounted in a sandbox's
// guest root anywhere on the host.
func boxliteMounts() []string {
	var out []string
	for _, m := range ctrd.MountsUnder("/") {
		if strings.Contains(m, "/.boxlite/containers/") {
			out = append(out, "mount: "+m)
		}
	}
	return out
}

// bundle is a task's bundle directory in the private containerd's state.
func (b *bench) bundle(id string) string {
	return filepath.Join(b.d.State, "io.containerd.runtime.v2.task", ns, id)
}

// pair adds the boxlite and runc rows of one figure, with the ratio of their
// medians on the boxlite row, and a target on the ratio if given.
func (b *bench) pair(figure, unit string, samples map[string][]float64, attempts map[string]int, target string, maxRatio float64) {
	var rows [2]Row
	for i, rt := range []string{boxlite, runc} {
		s := summarize(samples[rt])
		fails := attempts[rt] - s.N
		rows[i] = Row{Figure: figure, Runtime: rt, Unit: unit, Summary: &s, Failures: &fails, Attempts: attempts[rt]}
		if s.N == 0 {
			rows[i].Summary = nil
			rows[i].NotMeasured = "every attempt failed (see errors)"
		}
	}
	if rows[0].Summary != nil && rows[1].Summary != nil && rows[1].Summary.Median > 0 {
		rows[0].RatioToRunc = rows[0].Summary.Median / rows[1].Summary.Median
		if maxRatio > 0 {
			met := rows[0].RatioToRunc <= maxRatio
			rows[0].Target, rows[0].TargetMet = target, &met
		}
	}
	b.add(rows[0])
	b.add(rows[1])
}

// order alternates which runtime goes first from one repetition to the next,
// so that neither always runs on a machine the other has just warmed.
func order(i int) []string {
	if i%2 == 0 {
		return []string{boxlite, runc}
	}
	return []string{runc, boxlite}
}

// repeat times run once per runtime of runtimes and repetition, alternating
// which runtime goes first, after one unrecorded warm-up (whose errors are
// reported when warmUpErrors), and returns the samples (ms) and the attempts
// of each runtime. A failed run is reported and has no sample.
func (b *bench) repeat(ctx context.Context, what string, runtimes []string, warmUpErrors bool, run func(i int, rt string) (time.Duration, error)) (map[string][]float64, map[string]int) {
	samples := map[string][]float64{}
	attempts := map[string]int{}
	for i := -1; i < b.o.reps && ctx.Err() == nil; i++ {
		for _, rt := range order(i) {
			if !slices.Contains(runtimes, rt) {
				continue
			}
			d, err := run(i, rt)
			if i < 0 {
				if err != nil && warmUpErrors {
					b.errorf("%s warm-up (%s): %v", what, rt, err)
				}
				continue
			}
			attempts[rt]++
			if err != nil {
				b.errorf("%s (%s): %v", what, rt, err)
				continue
			}
			samples[rt] = append(samples[rt], ms([]time.Duration{d})[0])
		}
	}
	return samples, attempts
}

// coldStart times `ctr run --rm IMG ID /bin/true`: image already unpacked,
// container, snapshot, shim (and for boxlite, VMM and agent) all new.
func (b *bench) coldStart(ctx context.Context) {
	b.logf("cold start: %d runs each (+1 warm-up)", b.o.reps)
	measured := map[string]bool{}
	samples, attempts := b.repeat(ctx, "cold start", []string{boxlite, runc}, true, func(i int, rt string) (time.Duration, error) {
		id := b.newID(rt, "cold")
		if i >= 0 && rt == boxlite {
			measured[id] = true
		}
		b.live[id] = true
		d, err := b.timedCtr(ctx, b.runArgs(rt, "--rm", b.img, id, "/bin/true")...)
		if err != nil {
			_ = b.remove(id)
		}
		delete(b.live, id)
		return d, err
	})
	b.pair("cold start: ctr run --rm /bin/true", "ms", samples, attempts, "boxlite ≤ 1.15× runc", 1.15)
	b.phaseRows(measured)
}

// execLatency times `ctr task exec` of /bin/true in one running container
// per runtime.
func (b *bench) execLatency(ctx context.Context) {
	b.logf("exec latency: %d execs each (+1 warm-up)", b.o.reps)
	ids := map[string]string{}
	for _, rt := range []string{boxlite, runc} {
		id := b.newID(rt, "exec")
		if err := b.start(ctx, rt, id); err != nil {
			b.errorf("exec latency: start %s container: %v", rt, err)
			continue
		}
		ids[rt] = id
	}
	samples, attempts := b.repeat(ctx, "exec", slices.Collect(maps.Keys(ids)), false, func(i int, rt string) (time.Duration, error) {
		return b.timedCtr(ctx, "task", "exec", "--exec-id", fmt.Sprintf("e%d", i+1), ids[rt], "/bin/true")
	})
	b.removeAll(slices.Collect(maps.Values(ids)))
	b.pair("exec latency: ctr task exec /bin/true", "ms", samples, attempts, "boxlite ≤ 0.6× runc", 0.6)
}

// criHandlers are the CRI RuntimeClass handlers of each runtime: boxlite's
// from deploy/containerd/boxlite.toml, runc's added by startDaemon.
var criHandlers = map[string]string{boxlite: "boxlite", runc: "runc"}

// criFirstLog is the figure "CRI pod start to first log line": crictl runp
// (with the runtime's handler), create and start of a busybox container that
// echoes one line, timed until that line is in the container's CRI log file
// (kubelet format: "TIME stdout F LINE"). Each pod is stopped and removed
// before the next run; at the end nothing may be left in CRI.
func (b *bench) criFirstLog(ctx context.Context) {
	const figure = "CRI pod start to first log line"
	b.logf("CRI first log line: %d pods each (+1 warm-up)", b.o.reps)
	samples, attempts := b.repeat(ctx, "CRI first log line", []string{boxlite, runc}, true, func(_ int, rt string) (time.Duration, error) {
		return b.criRun(ctx, rt)
	})
	// Whatever an error or an interrupt left in CRI goes now.
	b.cri.AssertClean(b.h)
	b.pair(figure, "ms", samples, attempts, "boxlite ≤ 1.10× runc", 1.10)
}

// criRun runs one pod of runtime rt with a container that echoes a line,
// and returns the time from `crictl runp` until the line is in the log
// file. The pod is removed before it returns, whatever happened.
func (b *bench) criRun(ctx context.Context, rt string) (time.Duration, error) {
	b.seq++
	name := fmt.Sprintf("%s-log-%d", rt, b.seq)
	line := fmt.Sprintf("first line of %s", name)
	podCfg := b.cri.JSONFile(b.h, name+"-pod.json", b.cri.PodConfig(name, nil, nil))
	ctrCfg := b.cri.JSONFile(b.h, name+"-ctr.json", crid.ContainerConfig("c", nil, "echo", line))
	logFile := filepath.Join(b.cri.LogDir, name, "c.log")
	defer os.RemoveAll(filepath.Join(b.cri.LogDir, name))
	// Like ctr, an interrupt does not cut a crictl command short.
	cctx := context.WithoutCancel(ctx)
	t0 := time.Now()
	pod, err := b.cri.CrictlContext(cctx, "runp", "--runtime", criHandlers[rt], podCfg)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := b.cri.RemovePod(cctx, pod); err != nil {
			b.errorf("CRI first log line: remove %s pod %s: %v", rt, pod, err)
		}
	}()
	id, err := b.cri.CrictlContext(cctx, "create", pod, ctrCfg, podCfg)
	if err != nil {
		return 0, err
	}
	if _, err := b.cri.CrictlContext(cctx, "start", id); err != nil {
		return 0, err
	}
	want := " stdout F " + line + "\n"
	deadline := t0.Add(b.o.opTimeout)
	for {
		if data, err := os.ReadFile(logFile); err == nil && strings.Contains(string(data), want) {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(logFile)
			return 0, fmt.Errorf("%q not in %s after %v: %q", line, logFile, b.o.opTimeout, data)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// memory reads VmRSS of the processes of idle sandboxes: for boxlite the
// shim, the VMM (its PID from the sandbox record in the bundle) and the
// agent below it; for runc its shim. Each container runs `sleep 3600`.
func (b *bench) memory(ctx context.Context) {
	b.logf("memory: %d idle containers each", b.o.idle)
	var ids []string
	byRT := map[string][]string{}
	for i := 0; i < b.o.idle && ctx.Err() == nil; i++ {
		for _, rt := range order(i) {
			id := b.newID(rt, "mem")
			ids = append(ids, id)
			if err := b.start(ctx, rt, id); err != nil {
				b.errorf("memory: start %s container: %v", rt, err)
				continue
			}
			byRT[rt] = append(byRT[rt], id)
		}
	}
	// Let the processes settle (the Go runtime's first GC, page faults of
	// start-up) before reading.
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	shim := map[string][]float64{}
	var vmm, agent []float64
	for _, rt := range []string{boxlite, runc} {
		for _, id := range byRT[rt] {
			bundle := b.bundle(id)
			exe := "containerd-shim-runc-v2"
			if rt == boxlite {
				exe = "containerd-shim-boxlite-v2"
			}
			pid, err := shimPid(exe, id, b.d.Address)
			if err == nil && b.rep.Host[exe] == "" {
				// Which binary containerd ran: for runc it must be the
				// deps cache's (test/ctrd puts bin/, then deps, on PATH).
				b.rep.Host[exe], _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			}
			if err == nil {
				var r float64
				if r, err = rssMiB(pid); err == nil {
					shim[rt] = append(shim[rt], r)
				}
			}
			if err != nil {
				b.errorf("memory: %s shim of %s: %v", rt, id, err)
			}
			if rt != boxlite {
				continue
			}
			vp, ap, err := sandboxPids(bundle)
			if err != nil {
				b.errorf("memory: sandbox %s: %v", id, err)
			}
			if vp > 0 {
				if r, err := rssMiB(vp); err == nil {
					vmm = append(vmm, r)
				} else {
					b.errorf("memory: VMM of %s: %v", id, err)
				}
			}
			if ap > 0 {
				if r, err := rssMiB(ap); err == nil {
					agent = append(agent, r)
				} else {
					b.errorf("memory: agent of %s: %v", id, err)
				}
			}
		}
	}
	b.removeAll(ids)
	attempts := map[string]int{boxlite: b.o.idle, runc: b.o.idle}
	b.pair("memory: shim RSS per sandbox", "MiB", shim, attempts, "", 0)
	// The shim target is absolute, not a ratio.
	for i := range b.rep.Rows {
		r := &b.rep.Rows[i]
		if r.Figure == "memory: shim RSS per sandbox" && r.Runtime == boxlite && r.Summary != nil {
			met := r.Summary.Median <= 16
			r.Target, r.TargetMet = "≤ 16 MiB", &met
		}
	}
	for _, x := range []struct {
		figure, note string
		vs           []float64
	}{
		{"memory: VMM process RSS per idle sandbox", "under the test double the VMM runs no vCPU and maps no guest RAM; a real VMM adds the guest memory the guest touches (up to vm.memory_mib)", vmm},
		{"memory: agent RSS", "a host process under the test double", agent},
	} {
		s := summarize(x.vs)
		fails := b.o.idle - s.N
		r := Row{Figure: x.figure, Runtime: boxlite, Unit: "MiB", Summary: &s, Failures: &fails, Attempts: b.o.idle, Note: x.note}
		if s.N == 0 {
			r.Summary, r.NotMeasured = nil, "no process found (see errors)"
		}
		b.add(r)
	}
}

// density starts N containers at once with `ctr run -d` and times until
// every ctr has returned (ctr run -d returns once the task is started), then
// counts the tasks containerd lists as RUNNING; failures are the others.
// Everything is removed before the next run.
func (b *bench) density(ctx context.Context) {
	for _, n := range b.o.density {
		samples := map[string][]float64{}
		attempts := map[string]int{}
		fails := map[string]int{}
		var firstErr = map[string]string{}
		for i := 0; i < b.o.densityReps && ctx.Err() == nil; i++ {
			for _, rt := range order(i) {
				b.logf("density: %d %s containers at once (run %d of %d)", n, rt, i+1, b.o.densityReps)
				ids := make([]string, n)
				for j := range ids {
					ids[j] = b.newID(rt, fmt.Sprintf("d%d", n))
					b.live[ids[j]] = true
				}
				errs := make(chan error, n)
				t0 := time.Now()
				for _, id := range ids {
					go func() {
						_, err := b.ctr(ctx, b.runArgs(rt, "-d", b.img, id, "sleep", "3600")...)
						errs <- err
					}()
				}
				failed := 0
				for range ids {
					if err := <-errs; err != nil {
						failed++
						if firstErr[rt] == "" {
							firstErr[rt] = err.Error()
						}
					}
				}
				wall := time.Since(t0)
				running, err := b.running(ctx, ids)
				if err != nil {
					b.errorf("density: ctr task ls: %v", err)
				}
				if n-running > failed {
					failed = n - running
				}
				attempts[rt]++
				fails[rt] += failed
				if failed == 0 {
					samples[rt] = append(samples[rt], ms([]time.Duration{wall})[0])
				}
				b.removeAll(ids)
			}
		}
		figure := fmt.Sprintf("density: %d × ctr run -d, wall time until all running", n)
		var rows [2]Row
		for k, rt := range []string{boxlite, runc} {
			s := summarize(samples[rt])
			f := fails[rt]
			rows[k] = Row{Figure: figure, Runtime: rt, Unit: "ms", Summary: &s, Failures: &f, Attempts: attempts[rt] * n,
				Note: "N = runs with no failure (a run with any failure has no time); FAILED counts containers, of all started"}
			if f > 0 {
				rows[k].Note += "; first error: " + firstErr[rt]
			}
			if s.N == 0 {
				rows[k].Summary, rows[k].NotMeasured = nil, "no run without failures"
			}
			if n >= 50 {
				met := f == 0
				rows[k].Target, rows[k].TargetMet = "zero failures", &met
			}
		}
		if rows[0].Summary != nil && rows[1].Summary != nil && rows[1].Summary.Median > 0 {
			rows[0].RatioToRunc = rows[0].Summary.Median / rows[1].Summary.Median
			if n >= 50 {
				met := rows[0].RatioToRunc <= 1.10 && fails[boxlite] == 0
				rows[0].Target, rows[0].TargetMet = "≤ 1.10× runc, zero failures", &met
			}
		}
		b.add(rows[0])
		b.add(rows[1])
	}
}

// running counts the ids containerd lists as RUNNING tasks.
func (b *bench) running(ctx context.Context, ids []string) (int, error) {
	out, err := b.ctr(ctx, "task", "ls")
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && want[f[0]] && f[2] == "RUNNING" {
			n++
		}
	}
	return n, nil
}
