package critest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ocitest"
)

// Registry is a local OCI registry (distribution's `registry serve`) on a
// loopback port, storing under a test's directory.
type Registry struct {
	Addr string // 127.0.0.1:PORT
	cmd  *exec.Cmd
}

// StartRegistry runs the registry binary on a free loopback port; t.Cleanup
// stops it.
func StartRegistry(t testing.TB, binary, dir string) *Registry {
	t.Helper()
	addr := freeLoopbackPort(t)
	cfg := filepath.Join(dir, "registry.yml")
	// Storage on disk, deletes allowed, no other service (no cache, no
	// notifications, no auth: the registry is reachable on loopback only).
	body := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r := &Registry{Addr: addr, cmd: exec.Command(binary, "serve", cfg)}
	// No telemetry export: the registry's OpenTelemetry SDK would otherwise
	// try a collector.
	r.cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry did not answer on %s within 30s (%v); log:\n%s", addr, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeLoopbackPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Push uploads img's blobs and manifest as repo:tag (repo without a host,
// e.g. "e2e-test-images/busybox").
func (r *Registry) Push(ctx context.Context, repo, tag string, img *ocitest.Image) error {
	base := "http://" + r.Addr + "/v2/" + repo
	for d, b := range img.Blobs {
		if err := r.pushBlob(ctx, base, d, b); err != nil {
			return fmt.Errorf("push %s blob %s: %w", repo, d, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(img.Manifest))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ocitest.ManifestType)
	if err := do(req, http.StatusCreated); err != nil {
		return fmt.Errorf("push %s:%s manifest: %w", repo, tag, err)
	}
	return nil
}

func (r *Registry) pushBlob(ctx context.Context, base, digest string, b []byte) error {
	head, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/blobs/"+digest, nil)
	if err != nil {
		return err
	}
	if resp, err := http.DefaultClient.Do(head); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	start, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/blobs/uploads/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(start)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	loc = resp.Request.URL.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(b))
	if err != nil {
		return err
	}
	put.Header.Set("Content-Type", "application/octet-stream")
	return do(put, http.StatusCreated)
}

func do(req *http.Request, want int) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// HostsConfig writes containerd's registry hosts configuration (the CRI
// image service's config_path) under dir: for each upstream host, pulls
// and resolves go to the local registry over plain HTTP. It returns dir.
func (r *Registry) HostsConfig(t testing.TB, dir string, hosts []string) string {
	t.Helper()
	for _, h := range hosts {
		body := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+r.Addr, "http://"+r.Addr)
		p := filepath.Join(dir, h, "hosts.toml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
