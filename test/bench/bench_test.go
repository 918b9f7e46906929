package main

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/boxlite/boxlite-shim/kernel"
)

// BenchmarkExtract measures kernel.Extract of each kernel embedded in the
// test binary, into an empty cache (cold) and into a cache that already
// holds it (warm: the cached file's SHA-256 is verified). It needs the
// kernel build tags:
//
//	go test -tags 'kernel_lean kernel_net' -run '^$' -bench Extract ./test/bench
func BenchmarkExtract(b *testing.B) {
	embedded := kernel.Embedded()
	if len(embedded) == 0 {
		b.Skip("this test binary embeds no kernel: run with -tags 'kernel_lean kernel_net'")
	}
	for _, n := range embedded {
		b.Run(fmt.Sprintf("%s/cold", n), func(b *testing.B) {
			base := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				if _, _, err := extractOnce(n, filepath.Join(base, fmt.Sprint(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%s/warm", n), func(b *testing.B) {
			dir := b.TempDir()
			if _, _, err := extractOnce(n, dir); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, _, err := extractOnce(n, dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{5, 1, 4, 2, 3})
	if s.N != 5 || s.Median != 3 || s.Min != 1 || s.Max != 5 {
		t.Errorf("summarize: %+v", s)
	}
	if math.Abs(s.P10-1.4) > 1e-9 || math.Abs(s.P90-4.6) > 1e-9 {
		t.Errorf("p10 %v p90 %v, want 1.4 and 4.6", s.P10, s.P90)
	}
	if s.Values[0] != 5 {
		t.Errorf("values are kept in run order: %v", s.Values)
	}
	if one := summarize([]float64{7}); one.Median != 7 || one.P10 != 7 || one.P90 != 7 {
		t.Errorf("one value: %+v", one)
	}
	if none := summarize(nil); none.N != 0 {
		t.Errorf("no value: %+v", none)
	}
	if got := summarize([]float64{1, 2, 3, 4}).Median; got != 2.5 {
		t.Errorf("median of an even count: %v", got)
	}
}

func TestSpan(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		unit   string
		want   string
	}{
		{12, 15, "ms", "12.0–15.0 ms"},
		{900, 12000, "ms", "900 ms–12.0 s"},
		{1.5, 2.25, "MiB", "1.50–2.25 MiB"},
	} {
		if got := span(c.lo, c.hi, c.unit); got != c.want {
			t.Errorf("span(%v, %v, %s) = %q, want %q", c.lo, c.hi, c.unit, got, c.want)
		}
	}
}

func TestDescends(t *testing.T) {
	procs := map[int]proc{
		10: {Pid: 10, PPid: 1},
		20: {Pid: 20, PPid: 10},
		30: {Pid: 30, PPid: 20},
		40: {Pid: 40, PPid: 1},
	}
	if !descends(procs, 30, 10) || !descends(procs, 20, 10) {
		t.Error("30 and 20 descend from 10")
	}
	if descends(procs, 40, 10) || descends(procs, 10, 10) || descends(procs, 99, 10) {
		t.Error("40, 10 and an unknown PID do not descend from 10")
	}
}
