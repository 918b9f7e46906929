//go:build linux

package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An unregistered exec.Cmd child keeps its exit status for its own Wait while
// the reaper runs and registered children exit around it.
//
// Verified both ways: with a wait4(-1) reaper this test fails with ECHILD —
// the "global-wait4(-1)" case swaps one in and asserts exactly that.
func TestUnregisteredChildKeepsExitStatus(t *testing.T) {
	for _, k := range reaperKinds {
		t.Run(k.name, func(t *testing.T) {
			r := k.new(t)
			scans := countScans(r)

			// Registered children exiting at the same time: SIGCHLDs.
			var procs []*Process
			startTrue := func() {
				p, err := r.Start(exec.Command("/bin/true"))
				if err != nil {
					t.Fatal(err)
				}
				procs = append(procs, p)
			}
			startTrue()

			cmd := exec.Command("sh", "-c", "exit 42")
			startUnregistered(t, cmd)
			for range 10 {
				startTrue()
			}

			// Let the unregistered child exit (it is a zombie now, unless a
			// reaper stole it), then make sure two full SIGCHLD scans run
			// after that: the second one started after the zombie was seen.
			pid := cmd.Process.Pid
			eventually(5*time.Second, func() bool {
				st, _, ok := procStat(pid)
				return !ok || st == 'Z'
			})
			n0 := scans.Load()
			if !eventually(5*time.Second, func() bool {
				startTrue()
				return scans.Load() >= n0+2
			}) {
				t.Fatalf("no SIGCHLD scans ran (%d)", scans.Load()-n0)
			}
			if !k.wantECHILD && !isOurZombie(pid) {
				t.Fatalf("unregistered child %d was reaped by the reaper", pid)
			}
			for _, p := range procs {
				if e := waitExit(t, p); !k.wantECHILD && (e.Status != 0 || e.Unknown) {
					t.Errorf("registered /bin/true: %+v", e)
				}
			}

			err := cmd.Wait()
			if k.wantECHILD {
				if !isECHILD(err) {
					t.Fatalf("global wait4(-1) reaper: want ECHILD from cmd.Wait, got %v", err)
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 42 {
				t.Fatalf("unregistered child: want exit status 42, got %v", err)
			}
		})
	}
}

// A registered child is reaped with the right status and leaves no zombie.
func TestRegisteredChildIsReaped(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		register bool // cmd.Start + Register instead of Reaper.Start
		status   int
		signaled bool
	}{
		{name: "true", args: []string{"/bin/true"}, status: 0},
		{name: "exit7", args: []string{"sh", "-c", "exit 7"}, status: 7},
		{name: "sigkill", args: []string{"sh", "-c", "kill -KILL $$"}, status: 128 + 9, signaled: true},
		{name: "register-sleep", args: []string{"sh", "-c", "sleep 0.05; exit 3"}, register: true, status: 3},
	}
	for _, m := range modes {
		for _, c := range cases {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				r := newTestReaper(t, m)
				cmd := exec.Command(c.args[0], c.args[1:]...)
				var p *Process
				var err error
				if c.register {
					startUnregistered(t, cmd)
					p, err = r.Register(cmd.Process.Pid)
				} else {
					p, err = r.Start(cmd)
				}
				if err != nil {
					t.Fatal(err)
				}
				if p.Pid() != cmd.Process.Pid {
					t.Fatalf("Pid %d, want %d", p.Pid(), cmd.Process.Pid)
				}
				e := waitExit(t, p)
				want := Exit{Pid: p.Pid(), Status: c.status, Signaled: c.signaled, Timestamp: e.Timestamp}
				if e != want {
					t.Fatalf("got %+v, want %+v", e, want)
				}
				if e.Timestamp.IsZero() {
					t.Fatal("zero Timestamp")
				}
				assertReaped(t, p.Pid())
				if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
					t.Fatalf("Signal after exit: %v, want ErrProcessDone", err)
				}
			})
		}
	}
}

// A child that exits before its registration returns is not lost.
func TestExitBeforeRegistrationIsNotLost(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name+"/Start-true", func(t *testing.T) {
			r := newTestReaper(t, m)
			for range 20 {
				p, err := r.Start(exec.Command("/bin/true"))
				if err != nil {
					t.Fatal(err)
				}
				if e := waitExit(t, p); e.Status != 0 || e.Unknown || e.Signaled {
					t.Fatalf("got %+v", e)
				}
				assertReaped(t, p.Pid())
			}
		})
		t.Run(m.name+"/Register-zombie", func(t *testing.T) {
			r := newTestReaper(t, m)
			cmd := exec.Command("sh", "-c", "exit 3")
			startUnregistered(t, cmd)
			waitZombie(t, cmd.Process.Pid)
			p, err := r.Register(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			// The poll that follows registration found it: no SIGCHLD needed.
			e, ok := p.Exit()
			if !ok {
				t.Fatal("exit of an already-exited child not delivered by Register")
			}
			if e.Status != 3 || e.Unknown || e.Pid != cmd.Process.Pid {
				t.Fatalf("got %+v, want status 3", e)
			}
			assertReaped(t, cmd.Process.Pid)
		})
	}
}

// A registered PID reaped by someone else yields Exit{Unknown: true}, never a
// hang.
func TestReapedElsewhereIsUnknown(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name+"/before-Register", func(t *testing.T) {
			r := newTestReaper(t, m)
			cmd := exec.Command("sh", "-c", "exit 9")
			startUnregistered(t, cmd)
			var ws unix.WaitStatus
			if _, err := unix.Wait4(cmd.Process.Pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 9 {
				t.Fatalf("direct wait4: %v %v", err, ws)
			}
			p, err := r.Register(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			e, ok := p.Exit()
			if !ok || !e.Unknown || e.Status != UnknownStatus || e.Pid != cmd.Process.Pid {
				t.Fatalf("got %+v %v, want an Unknown exit at once", e, ok)
			}
		})
		t.Run(m.name+"/after-Register", func(t *testing.T) {
			r := newTestReaper(t, m)
			cmd := exec.Command("sleep", "10")
			startUnregistered(t, cmd)
			pid := cmd.Process.Pid
			p, err := r.Register(pid)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := p.Exit(); ok {
				t.Fatal("running process reported as exited")
			}
			// Hold the reaper off (its SIGCHLD scan blocks on mu) while we
			// kill and reap the child ourselves.
			r.mu.Lock()
			if err := unix.Kill(pid, unix.SIGKILL); err != nil {
				r.mu.Unlock()
				t.Fatal(err)
			}
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(pid, &ws, 0, nil)
			r.mu.Unlock()
			if err != nil || wpid != pid || !ws.Signaled() {
				t.Fatalf("direct wait4: %d %v %v", wpid, err, ws)
			}
			e := waitExit(t, p) // bounded: fails instead of hanging
			if !e.Unknown || e.Status != UnknownStatus {
				t.Fatalf("got %+v, want Unknown", e)
			}
		})
	}
}

// 200 exec.Cmd.Run concurrent with 200 registered children: no ECHILD for
// Run, no zombies, every registered exit delivered with its status.
//
// Verified both ways: with a wait4(-1) reaper this test fails with ECHILD —
// the "global-wait4(-1)" case swaps one in and asserts that some Run got it.
// Whether a given Run loses the race to wait4(-1) depends on scheduling (its
// Wait may already be blocked in waitid when the child exits), so that case
// repeats the round, up to 10 times, until an ECHILD shows up; usually the
// first round already has several.
func TestConcurrentRunAndRegistered(t *testing.T) {
	for _, k := range reaperKinds {
		t.Run(k.name, func(t *testing.T) {
			r := k.new(t)
			if !k.wantECHILD {
				if n := concurrentRound(t, r, true); n != 0 {
					t.Fatalf("%d/200 exec.Cmd.Run failed with ECHILD", n)
				}
				return
			}
			for round := 1; round <= 10; round++ {
				if n := concurrentRound(t, r, false); n > 0 {
					t.Logf("global wait4(-1) reaper: %d/200 exec.Cmd.Run failed with ECHILD (round %d)", n, round)
					return
				}
			}
			t.Fatal("global wait4(-1) reaper: expected some exec.Cmd.Run to fail with ECHILD")
		})
	}
}

// concurrentRound runs 200 exec.Cmd.Run and 200 registered children at once,
// checks that every registered exit is delivered (with the right status if
// checkStatus) and that no zombie is left, and returns how many Runs failed
// with ECHILD.
func concurrentRound(t *testing.T, r *Reaper, checkStatus bool) int {
	t.Helper()
	const n = 200
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 16)
		echild   atomic.Int32
		otherErr atomic.Int32
		firstErr atomic.Value
		procs    = make([]*Process, n)
	)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			err := exec.Command("/bin/true").Run()
			switch {
			case err == nil:
			case isECHILD(err):
				echild.Add(1)
			default:
				otherErr.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p, err := r.Start(exec.Command("sh", "-c", fmt.Sprintf("exit %d", i%128)))
			if err != nil {
				otherErr.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			procs[i] = p
		}()
	}
	wg.Wait()
	if otherErr.Load() != 0 {
		t.Fatalf("%d unexpected errors, first: %v", otherErr.Load(), firstErr.Load())
	}
	for i, p := range procs {
		e := waitExit(t, p)
		if checkStatus && (e.Status != i%128 || e.Unknown || e.Signaled || e.Pid != p.Pid()) {
			t.Errorf("child %d: got %+v, want status %d", i, e, i%128)
		}
	}
	if zs := ourZombies(t); len(zs) != 0 {
		t.Errorf("zombies left: %v", zs)
	}
	return int(echild.Load())
}

// Many goroutines registering the same and different PIDs at once.
func TestConcurrentRegister(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := newTestReaper(t, m)
			cmd := exec.Command("sh", "-c", "read x; exit 4")
			w := stdinPipe(t, cmd)
			startUnregistered(t, cmd)
			var (
				wg   sync.WaitGroup
				ok   atomic.Int32
				dups atomic.Int32
				mu   sync.Mutex
				got  *Process
			)
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p, err := r.Register(cmd.Process.Pid)
					switch {
					case err == nil:
						ok.Add(1)
						mu.Lock()
						got = p
						mu.Unlock()
					case errors.Is(err, ErrAlreadyRegistered):
						dups.Add(1)
					default:
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 1 || dups.Load() != 31 {
				t.Fatalf("registrations: %d ok, %d ErrAlreadyRegistered; want 1 and 31", ok.Load(), dups.Load())
			}
			w.Close()
			if e := waitExit(t, got); e.Status != 4 || e.Unknown {
				t.Fatalf("got %+v", e)
			}
			// Once it is reaped, the PID may be registered again (and is
			// found gone).
			p, err := r.Register(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if e := waitExit(t, p); !e.Unknown {
				t.Fatalf("re-registered reaped pid: %+v", e)
			}
		})
	}
}

// Process.Signal reaches the process while it runs.
func TestSignal(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := newTestReaper(t, m)
			p, err := r.Start(exec.Command("sleep", "10"))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Signal(unix.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if e := waitExit(t, p); !e.Signaled || e.Status != 128+int(unix.SIGTERM) {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestStartRejectsNonFileStdio(t *testing.T) {
	r := newTestReaper(t, modes[1])
	for _, set := range []func(*exec.Cmd){
		func(c *exec.Cmd) { c.Stdin = strings.NewReader("x") },
		func(c *exec.Cmd) { c.Stdout = new(strings.Builder) },
		func(c *exec.Cmd) { c.Stderr = new(strings.Builder) },
	} {
		cmd := exec.Command("/bin/true")
		set(cmd)
		if _, err := r.Start(cmd); !errors.Is(err, ErrStdio) {
			t.Fatalf("got %v, want ErrStdio", err)
		}
		if cmd.Process != nil {
			t.Fatal("command was started")
		}
	}
	// *os.File stdio is fine.
	cmd := exec.Command("/bin/true")
	cmd.Stdout = os.Stderr
	p, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	waitExit(t, p)
}

func TestCloseAndDefault(t *testing.T) {
	if Default() != Default() {
		t.Fatal("Default is not one instance")
	}
	r := newTestReaper(t, modes[1])
	p, err := r.Start(exec.Command("sleep", "0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(p.Pid()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
	if _, err := r.Start(exec.Command("/bin/true")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if _, err := r.RegisterGroup(12345); !errors.Is(err, ErrClosed) {
		t.Fatalf("RegisterGroup after Close: %v", err)
	}
	// Without SIGCHLD handling, Reap still collects it.
	waitZombie(t, p.Pid())
	r.Reap()
	if e, ok := p.Exit(); !ok || e.Status != 0 {
		t.Fatalf("after Reap: %+v %v", e, ok)
	}
	if _, err := New().Register(0); err == nil {
		t.Fatal("Register(0) accepted")
	}
}

func stdinPipe(t *testing.T, cmd *exec.Cmd) *os.File {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pr
	t.Cleanup(func() { pr.Close(); pw.Close() })
	return pw
}
