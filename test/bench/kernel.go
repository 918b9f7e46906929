package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/boxlite/boxlite-shim/kernel"
)

// extractOnce extracts variant n into cacheDir with kernel.Extract (the
// call the shim makes on every sandbox start) and returns how long it took
// and the size of the extracted file.
func extractOnce(n kernel.Name, cacheDir string) (time.Duration, int64, error) {
	t0 := time.Now()
	path, err := kernel.Extract(n, cacheDir)
	d := time.Since(t0)
	if err != nil {
		return d, 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return d, 0, err
	}
	return d, fi.Size(), nil
}

// kernelExtraction times kernel.Extract of each kernel embedded in this
// bench binary: into an empty cache directory (cold: decompress, hash,
// write, fsync, rename) and again into the same one (warm: the shim's path
// on every later sandbox start: the verification record beside the cached
// file, hashed again only when the file changed).
func (b *bench) kernelExtraction() {
	embedded := kernel.Embedded()
	if len(embedded) == 0 {
		b.add(Row{Figure: "kernel extraction", NotMeasured: "this bench binary embeds no kernel: run it with -tags 'kernel_lean kernel_net' (make bench does)"})
		return
	}
	for _, n := range embedded {
		b.logf("kernel extraction: %s, %d times cold and warm", n, b.o.kernelReps)
		var cold, warm []time.Duration
		var size int64
		for i := 0; i < b.o.kernelReps; i++ {
			dir := filepath.Join(b.dir, fmt.Sprintf("kx-%s-%d", n, i))
			d, sz, err := extractOnce(n, dir)
			if err != nil {
				b.errorf("extract %s (cold): %v", n, err)
				os.RemoveAll(dir)
				continue
			}
			cold, size = append(cold, d), sz
			if d, _, err = extractOnce(n, dir); err != nil {
				b.errorf("extract %s (warm): %v", n, err)
			} else {
				warm = append(warm, d)
			}
			os.RemoveAll(dir)
		}
		note := fmt.Sprintf("kernel.Extract in-process; %s blob %.1f MiB uncompressed", n, float64(size)/(1<<20))
		for _, x := range []struct {
			what string
			ds   []time.Duration
		}{{"cold (empty cache)", cold}, {"warm (cached, verification record)", warm}} {
			s := summarize(ms(x.ds))
			r := Row{Figure: fmt.Sprintf("kernel extraction %s: %s", n, x.what), Runtime: boxlite, Unit: "ms", Summary: &s, Note: note}
			if s.N == 0 {
				r.Summary, r.NotMeasured = nil, "every attempt failed (see errors)"
			}
			b.rep.Rows = append(b.rep.Rows, r) // no VM path involved: no test-double label
		}
	}
}
