package e2e

import (
	"strings"
	"testing"
	"time"
)

func TestCtr(t *testing.T) {
	s := newSuite(t)
	t.Run("run-exit-code", func(t *testing.T) {
		t.Cleanup(func() { s.assertClean(t) })
		ctx := ctxFor(t, 90*time.Second)
		out, err := s.d.CtrStdout(ctx, s.runArgs("--rm", s.img, "run1", "sh", "-c", "echo hi; exit 3")...)
		if code := exitCode(err); code != 3 || out != "hi\n" {
			t.Fatalf("ctr run: exit %d (%v), stdout %q; want 3 and \"hi\\n\"", code, err, out)
		}
	})
	_ = strings.TrimSpace
}
