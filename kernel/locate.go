package kernel

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Source is where a sandbox's kernel comes from.
type Source struct {
	Name Name
	// Path is the file to stage as libkrunfw.so.5 (SOName).
	Path string
	// Embedded is true when Path was extracted from this binary, false when
	// it is the path configured in [kernel.paths].
	Embedded bool
	// SHA256 is the hex SHA-256 of the file at Path.
	SHA256 string
}

// Locate finds the file of variant n. A path configured in p.Paths wins (the
// distro-packaging mode): it must be an absolute path to a readable, non-empty
// regular file, and its SHA-256 is computed. Otherwise the blob embedded in
// this binary is extracted into cacheDir (see Extract). Otherwise the error
// matches errdefs.ErrNotFound and says which variants are available, and how
// to make n available (the make flag or the config key).
//
// Locate checks availability only; whether n is allowed is Select's job.
// It never substitutes another variant for n.
func Locate(n Name, p Policy, cacheDir string) (Source, error) {
	if _, err := Parse(string(n)); err != nil {
		return Source{}, err
	}
	if path := p.Paths[n]; path != "" {
		return locatePath(n, path)
	}
	if _, ok := lookup(n); ok {
		path, err := Extract(n, cacheDir)
		if err != nil {
			return Source{}, err
		}
		sum, _ := EmbeddedSHA256(n)
		return Source{Name: n, Path: path, Embedded: true, SHA256: sum}, nil
	}
	return Source{}, errorf(errdefs.ErrNotFound,
		"kernel variant %q is not available in this build: this binary %s and the config sets no path for it (available: %s); "+
			"rebuild with `make KERNELS=%q` or set [kernel.paths] %s = \"/path/to/%s\" in the shim's config file",
		n, embedsPhrase(), availableList(p), kernelsFlag(n), n, SOName)
}

func locatePath(n Name, path string) (Source, error) {
	key := fmt.Sprintf("[kernel.paths] %s = %s", n, quote(path))
	if !filepath.IsAbs(path) {
		return Source{}, errorf(errdefs.ErrInvalidArgument, "kernel variant %s: %s: must be an absolute path", n, key)
	}
	sum, err := hashFile(path)
	if err != nil {
		return Source{}, fmt.Errorf("kernel variant %s: the file configured as %s cannot be used: %w", n, key, err)
	}
	return Source{Name: n, Path: filepath.Clean(path), Embedded: false, SHA256: sum}, nil
}

// Available lists the variants this binary and configuration can provide
// (embedded, or given a path in p.Paths), in the order of Names. It does not
// open configured files: Locate checks them.
func Available(p Policy) []Name {
	var out []Name
	for _, n := range Names() {
		_, embedded := lookup(n)
		if embedded || p.Paths[n] != "" {
			out = append(out, n)
		}
	}
	return out
}

// embedsPhrase says what this binary embeds: "embeds [lean net]" or
// "embeds no kernel".
func embedsPhrase() string {
	e := Embedded()
	if len(e) == 0 {
		return "embeds no kernel"
	}
	s := make([]string, len(e))
	for i, n := range e {
		s[i] = string(n)
	}
	return "embeds [" + strings.Join(s, " ") + "]"
}

// availableList names the available variants for a message.
func availableList(p Policy) string {
	a := Available(p)
	if len(a) == 0 {
		return "none"
	}
	return joinNames(a)
}

// kernelsFlag is the KERNELS value of a build embedding what this one does,
// plus n.
func kernelsFlag(n Name) string {
	var s []string
	for _, v := range Names() {
		if _, ok := lookup(v); ok || v == n {
			s = append(s, string(v))
		}
	}
	return strings.Join(s, " ")
}
