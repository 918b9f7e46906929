//go:build linux

package reaper

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An orphan in a registered process group is reaped thanks to the subreaper.
// PR_SET_CHILD_SUBREAPER affects the whole process, so the work runs in a
// re-executed copy of the test binary (runOrphanHelper), which reports
// through its exit status and output.
func TestOrphanInRegisteredGroupIsReaped(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if m.usePidfd && !pidfdWorks() {
				t.Skip("this kernel lacks pidfd_open")
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+m.name)
			out, err := cmd.CombinedOutput()
			t.Logf("helper output:\n%s", out)
			if err != nil {
				t.Fatalf("helper failed: %v", err)
			}
			if !strings.Contains(string(out), "orphan reaped") {
				t.Fatal("helper did not report success")
			}
		})
	}
}

// runOrphanHelper runs in the helper process (see TestMain).
func runOrphanHelper(modeName string) error {
	if err := SetSubreaper(); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	if ok, err := IsSubreaper(); err != nil || !ok {
		return fmt.Errorf("not a subreaper: %v %v", ok, err)
	}
	r := New()
	defer r.Close()
	if modeName == "wait4pid" {
		r.usePidfd = false
	}

	// orphaner starts sh in its own process group; sh leaves a background
	// sleep behind (an orphan, reparented to us) and exits 0.
	orphaner := func(sleep string) (leader *Process, grandchild int, err error) {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, 0, err
		}
		defer pr.Close()
		cmd := exec.Command("sh", "-c", "sleep "+sleep+" & echo $!; exit 0")
		cmd.Stdout = pw
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		leader, err = r.Start(cmd)
		pw.Close()
		if err != nil {
			return nil, 0, err
		}
		line, err := bufio.NewReader(pr).ReadString('\n')
		if err != nil {
			return nil, 0, fmt.Errorf("reading grandchild pid: %w", err)
		}
		grandchild, err = strconv.Atoi(strings.TrimSpace(line))
		return leader, grandchild, err
	}
	waitLeader := func(p *Process) error {
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			return errors.New("leader exit not delivered")
		}
		if e := p.Wait(); e.Status != 0 || e.Unknown {
			return fmt.Errorf("leader exit %+v", e)
		}
		return nil
	}

	// Control: with no group registered the orphan comes back to us and
	// stays a zombie — nobody else reaps it. (Proves the subreaper works
	// and that the reaper does not reap what is not registered.)
	leader, gc, err := orphaner("0.05")
	if err != nil {
		return err
	}
	if err := waitLeader(leader); err != nil {
		return err
	}
	if !eventually(5*time.Second, func() bool { return isOurZombie(gc) }) {
		st, ppid, ok := procStat(gc)
		return fmt.Errorf("control: orphan %d not our zombie: %q ppid %d exists %v", gc, st, ppid, ok)
	}
	time.Sleep(50 * time.Millisecond) // SIGCHLD scans run; it must stay
	if !isOurZombie(gc) {
		return fmt.Errorf("control: unregistered orphan %d was reaped", gc)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(gc, &ws, 0, nil); err != nil {
		return fmt.Errorf("control cleanup: %w", err)
	}
	fmt.Println("control: unregistered orphan left as our zombie")

	// With the group registered, the orphan is reaped.
	leader, gc, err = orphaner("0.2")
	if err != nil {
		return err
	}
	g, err := r.RegisterGroup(leader.Pid())
	if err != nil {
		return err
	}
	defer g.Unregister()
	if err := waitLeader(leader); err != nil {
		return err
	}
	if _, ppid, ok := procStat(gc); !ok || ppid != os.Getpid() {
		return fmt.Errorf("orphan %d not reparented to us (ppid %d, exists %v)", gc, ppid, ok)
	}
	if !eventually(5*time.Second, func() bool { _, _, ok := procStat(gc); return !ok }) {
		st, ppid, _ := procStat(gc)
		return fmt.Errorf("orphan %d not reaped: state %q ppid %d", gc, st, ppid)
	}
	fmt.Println("orphan reaped")
	return nil
}

// The group leader, registered with Register too, gets its own exit through
// the group; a group member reaped before its Register still gets its exit.
func TestGroupRouting(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name+"/leader", func(t *testing.T) {
			r := newTestReaper(t, m)
			cmd := exec.Command("sh", "-c", "read x; exit 5")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			w := stdinPipe(t, cmd)
			startUnregistered(t, cmd)
			g, err := r.RegisterGroup(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Unregister)
			p, err := r.Register(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			if e := waitExit(t, p); e.Status != 5 || e.Unknown {
				t.Fatalf("leader: got %+v, want status 5", e)
			}
			assertReaped(t, p.Pid())
		})
		t.Run(m.name+"/reaped-by-group-then-registered", func(t *testing.T) {
			r := newTestReaper(t, m)
			cmd := exec.Command("sh", "-c", "exit 6")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			startUnregistered(t, cmd)
			pid := cmd.Process.Pid
			waitZombie(t, pid)
			g, err := r.RegisterGroup(pid) // reaps the zombie at once
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Unregister)
			if _, _, ok := procStat(pid); ok {
				t.Fatalf("group member %d not reaped by RegisterGroup", pid)
			}
			p, err := r.Register(pid)
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := p.Exit(); !ok || e.Status != 6 || e.Unknown {
				t.Fatalf("got %+v %v, want status 6", e, ok)
			}
		})
		t.Run(m.name+"/Start-into-group", func(t *testing.T) {
			// Children started into a registered group (Setpgid with its
			// Pgid) race the group's wait; Start must still deliver each
			// exit to its Process.
			r := newTestReaper(t, m)
			lead := exec.Command("sh", "-c", "read x")
			lead.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			w := stdinPipe(t, lead)
			lp, err := r.Start(lead)
			if err != nil {
				t.Fatal(err)
			}
			g, err := r.RegisterGroup(lp.Pid())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Unregister)
			for i := range 30 {
				cmd := exec.Command("sh", "-c", fmt.Sprintf("exit %d", i))
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: lp.Pid()}
				p, err := r.Start(cmd)
				if err != nil {
					t.Fatal(err)
				}
				if e := waitExit(t, p); e.Status != i || e.Unknown {
					t.Fatalf("member %d: got %+v", i, e)
				}
			}
			w.Close()
			waitExit(t, lp)
		})
	}
}

func TestRegisterGroupErrors(t *testing.T) {
	r := newTestReaper(t, modes[1])
	for _, pgid := range []int{-5, 0, 1, unix.Getpgrp()} {
		if _, err := r.RegisterGroup(pgid); err == nil {
			t.Errorf("RegisterGroup(%d) accepted", pgid)
		}
	}
	cmd := exec.Command("sleep", "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	startUnregistered(t, cmd)
	g, err := r.RegisterGroup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterGroup(cmd.Process.Pid); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second RegisterGroup: %v", err)
	}
	g.Unregister()
	g.Unregister()
	g2, err := r.RegisterGroup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	g2.Unregister()
	if g2.Pgid() != cmd.Process.Pid {
		t.Fatal("Pgid")
	}
}
