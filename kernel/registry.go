package kernel

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// blob is a kernel variant embedded in this binary: the zstd-compressed
// libkrunfw.so.5 and the hex SHA-256 of its uncompressed content.
type blob struct {
	zst    []byte
	sha256 string
}

var (
	registryMu sync.RWMutex
	registry   = map[Name]blob{}
)

// register records the embedded blob of variant n. meta is the content of the
// blob's .sha256 file: the hex SHA-256 of the uncompressed blob, optionally
// followed by whitespace and a version string. It is called from the init
// functions of the build-tagged embed_*.go files (and by tests); a malformed
// blob is a broken build, so it panics.
func register(n Name, zst []byte, meta string) {
	if _, err := Parse(string(n)); err != nil {
		panic(fmt.Sprintf("kernel: register: %v", err))
	}
	sum, _, err := parseMeta(meta)
	if err != nil {
		panic(fmt.Sprintf("kernel: embedded blob for variant %s: %v", n, err))
	}
	if len(zst) == 0 {
		panic(fmt.Sprintf("kernel: embedded blob for variant %s is empty", n))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[n]; dup {
		panic(fmt.Sprintf("kernel: variant %s is embedded twice", n))
	}
	registry[n] = blob{zst: zst, sha256: sum}
}

// parseMeta parses a .sha256 metadata file: a hex SHA-256, then optionally
// whitespace and a version string.
func parseMeta(meta string) (sum, version string, err error) {
	fields := strings.Fields(meta)
	if len(fields) == 0 {
		return "", "", fmt.Errorf("sha256 metadata is empty")
	}
	sum, err = normHex(fields[0])
	if err != nil {
		return "", "", err
	}
	return sum, strings.Join(fields[1:], " "), nil
}

// normHex checks that s is a hex SHA-256 and returns it in lower case.
func normHex(s string) (string, error) {
	if len(s) != 2*32 {
		return "", fmt.Errorf("sha256 %s is not 64 hex digits", quote(s))
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("sha256 %s is not 64 hex digits", quote(s))
	}
	return strings.ToLower(s), nil
}

func lookup(n Name) (blob, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	b, ok := registry[n]
	return b, ok
}

// Embedded lists the variants compiled into this binary, in the order of
// Names. A build with no kernel_* tag embeds none.
func Embedded() []Name {
	var out []Name
	for _, n := range Names() {
		if _, ok := lookup(n); ok {
			out = append(out, n)
		}
	}
	return out
}

// EmbeddedSHA256 returns the hex SHA-256 of the uncompressed blob of variant
// n, and whether this binary embeds n.
func EmbeddedSHA256(n Name) (string, bool) {
	b, ok := lookup(n)
	return b.sha256, ok
}
