package preflight

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
)

// KernelRow describes one kernel variant as this binary and config see it.
type KernelRow struct {
	Name     kernel.Name
	Default  bool
	Allowed  bool
	Source   kernel.Source
	Features kernel.Features
	// Err is why the variant cannot be booted (not available, unreadable,
	// corrupt); the other fields are then partly empty.
	Err error
}

// Kernels reports every known variant: where its blob comes from (embedded
// or a configured path), its SHA-256, and what the blob itself says about its
// kernel (version, iptables, nf_tables, bridge, NET_NS, and how it knows).
// Embedded blobs are extracted into the configured cache to be read.
func Kernels(cfg *config.Config) []KernelRow {
	p := cfg.KernelPolicy()
	var rows []KernelRow
	for _, n := range kernel.Names() {
		row := KernelRow{Name: n, Default: n == p.Default, Allowed: p.Allows(n)}
		row.Source, row.Err = kernel.Locate(n, p, cfg.CacheDir)
		if row.Err == nil {
			row.Features, row.Err = kernel.Inspect(row.Source.Path)
		}
		rows = append(rows, row)
	}
	return rows
}

// PrintKernels writes the report as a table, then one line per variant that
// cannot be booted saying why.
func PrintKernels(w io.Writer, rows []KernelRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIANT\tSTATE\tSOURCE\tSHA256\tVERSION\tIPTABLES\tNFTABLES\tBRIDGE\tNETNS\tFROM")
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\n", r.Name, state(r))
			continue
		}
		src := r.Source.Path
		if r.Source.Embedded {
			src = "embedded"
		}
		v := r.Features.Version
		if v == "" {
			v = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, state(r), src, short(r.Source.SHA256), v,
			r.Features.IPTables, r.Features.NFTables, r.Features.Bridge, r.Features.NetNS, r.Features.Method)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(w, "%s: %v\n", r.Name, r.Err)
		}
	}
}

func state(r KernelRow) string {
	s := []string{}
	if r.Err != nil {
		s = append(s, "unavailable")
	}
	if r.Default {
		s = append(s, "default")
	}
	if !r.Allowed {
		s = append(s, "not-allowed")
	} else if r.Err == nil {
		s = append(s, "allowed")
	}
	return strings.Join(s, ",")
}

func short(sha string) string {
	if len(sha) > 16 {
		return sha[:16]
	}
	return sha
}
