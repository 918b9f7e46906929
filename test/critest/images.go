package critest

import (
	"fmt"
	"strings"

	"github.com/boxlite/boxlite-shim/test/ocitest"
)

// Upstream hosts of the images critest pulls; containerd is pointed at the
// local registry for each (HostsConfig).
var Hosts = []string{"registry.k8s.io", "gcr.io", "k8s.gcr.io"}

const staging = "gcr.io/k8s-staging-cri-tools/"

// imageUsers is the /etc/passwd and /etc/group of the images with a USER
// (cri-tools' images/image-user and image-predefined-group are busybox with
// `adduser -u 1000 default-user`, `addgroup -g 50000 group-defined-in-image`
// and default-user in it).
var imageUsers = map[string]ocitest.File{
	"etc/passwd": {Data: strings.Join([]string{
		"root:x:0:0:root:/root:/bin/sh",
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false",
		"bin:x:2:2:bin:/bin:/bin/false",
		"sys:x:3:3:sys:/dev:/bin/false",
		"www-data:x:33:33:www-data:/var/www:/bin/false",
		"nobody:x:65534:65534:nobody:/home:/bin/false",
		"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh",
		""}, "\n")},
	"etc/group": {Data: strings.Join([]string{
		"root:x:0:",
		"daemon:x:1:",
		"bin:x:2:",
		"sys:x:3:",
		"www-data:x:33:",
		"users:x:100:",
		"nogroup:x:65534:",
		"default-user:x:1000:",
		"group-defined-in-image:x:50000:default-user",
		""}, "\n")},
}

// webRoot is the page the web server images serve.
var webRoot = map[string]ocitest.File{
	"www/index.html": {Data: "<html><body>boxlite critest web server</body></html>\n"},
}

// applets are busybox applets the upstream images have and Debian's
// busybox-static lacks, as scripts reading what the real ones read
// (/proc): pgrep (execSync with timeout checks no sleep is left) and ipcs -m
// (the HostIPC specs look for a segment made on the host).
var applets = map[string]ocitest.File{
	"usr/bin/pgrep": {Mode: 0o755, Data: `#!/bin/sh
# pgrep PATTERN: the PIDs of the processes whose name matches PATTERN.
rc=1
for d in /proc/[0-9]*; do
	if grep -qE -- "$1" "$d/comm" 2>/dev/null; then echo "${d#/proc/}"; rc=0; fi
done
exit $rc
`},
	"usr/bin/ipcs": {Mode: 0o755, Data: `#!/bin/sh
# ipcs -m: the System V shared memory segments of this IPC namespace.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
	printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
`},
}

// nginx is the stand-in for the e2e nginx image the networking and
// namespace specs run: PID 1 is a process named nginx (pidof nginx) whose
// command line says "master process" and which writes /var/run/nginx.pid,
// as nginx's master does, serving /www with busybox httpd (its worker) on
// the port given.
var nginx = map[string]ocitest.File{
	"usr/sbin/nginx": {Mode: 0o755, Data: `#!/bin/sh
# nginx "master process" PORT
echo $$ > /var/run/nginx.pid
httpd -f -p "$2" -h /www &
worker=$!
trap 'kill $worker; exit 0' TERM INT QUIT
wait $worker
`},
}

// imageDef is one image critest pulls, under each of its names.
type imageDef struct {
	names  []string // full references with a tag
	cfg    ocitest.Config
	layers []map[string]ocitest.File // above the busybox layer
}

// imageSet is every image pkg/validate (cri-tools v1.37.0) pulls, by its
// upstream name, built from the busybox layer. Same-image names share one
// definition (so one digest); different images differ by a file. The
// digest-pinned reference (test-image-digest@sha256:9700f9a2...) cannot be
// rebuilt: its spec is skipped on both handlers (see skips).
// SandboxImage is the pods' sandbox image in the harness (pinned in CRI's
// config): a process named pause, as Kubernetes' (not test/crid's, whose
// process is sleep: a spec counts the sleep processes of a pod).
const SandboxImage = "registry.k8s.io/pause:3.10"

// httpdForeground is the stand-in for the e2e httpd image's command: it
// says it starts, as Apache's httpd does on stderr (a spec looks for
// "httpd" in the container's log), and serves /www on port 80.
var httpdForeground = map[string]ocitest.File{
	"usr/local/bin/httpd-foreground": {Mode: 0o755, Data: `#!/bin/sh
echo "httpd: serving /www on port 80" >&2
exec httpd -f -p 80 -h /www
`},
}

func imageSet(bins map[string]string) []imageDef {
	marker := func(name string) map[string]ocitest.File {
		return map[string]ocitest.File{name: {Data: name + "\n"}}
	}
	nginxAt := func(port int) ocitest.Config {
		return ocitest.Config{Entrypoint: []string{"/usr/sbin/nginx", "master process", fmt.Sprint(port)},
			ExposedPorts: []string{fmt.Sprintf("%d/tcp", port)}}
	}
	type files = map[string]ocitest.File
	sh := ocitest.Config{Cmd: []string{"sh"}}
	user := func(u string) ocitest.Config { return ocitest.Config{Cmd: []string{"sh"}, User: u} }
	defs := []imageDef{
		{names: []string{"registry.k8s.io/e2e-test-images/busybox:1.29-2"}, cfg: sh},
		{names: []string{"registry.k8s.io/e2e-test-images/nginx:1.14-2"}, cfg: nginxAt(80), layers: []files{webRoot, nginx}},
		{names: []string{staging + "hostnet-nginx-amd64:latest"}, cfg: nginxAt(12003), layers: []files{webRoot, nginx}},
		{names: []string{"registry.k8s.io/e2e-test-images/httpd:2.4.39-4"}, layers: []files{webRoot, httpdForeground},
			cfg: ocitest.Config{Cmd: []string{"httpd-foreground"}, ExposedPorts: []string{"80/tcp"}}},
		{names: []string{"registry.k8s.io/e2e-test-images/nonewprivs:1.3"}, cfg: ocitest.Config{Entrypoint: []string{"/usr/local/bin/nnp"}},
			layers: []files{{"usr/local/bin/nnp": {Data: bins["nnp"], Mode: 0o4755}}}},
		{names: []string{SandboxImage}, cfg: ocitest.Config{Entrypoint: []string{"/pause"}}, layers: []files{{"pause": {Data: bins["pause"], Mode: 0o755}}}},
		{names: []string{staging + "test-image-user-uid:latest"}, cfg: user("1002"), layers: []files{imageUsers}},
		{names: []string{staging + "test-image-user-username:latest"}, cfg: user("www-data"), layers: []files{imageUsers}},
		{names: []string{staging + "test-image-user-uid-group:latest"}, cfg: user("1003:users"), layers: []files{imageUsers}},
		{names: []string{staging + "test-image-user-username-group:latest"}, cfg: user("www-data:users"), layers: []files{imageUsers}},
		{names: []string{staging + "test-image-predefined-group:latest"}, cfg: user("1000"), layers: []files{imageUsers}},
		{names: []string{staging + "test-image-latest:latest"}, cfg: sh, layers: []files{marker("test-image-latest")}},
		{names: []string{staging + "test-image-tag:test", staging + "test-image-tag:all"}, cfg: sh, layers: []files{marker("test-image-tag")}},
		{names: []string{staging + "test-image-1:latest"}, cfg: sh, layers: []files{marker("test-image-1")}},
		{names: []string{staging + "test-image-2:latest"}, cfg: sh, layers: []files{marker("test-image-2")}},
		{names: []string{staging + "test-image-3:latest"}, cfg: sh, layers: []files{marker("test-image-3")}},
		{names: []string{staging + "test-image-tags:1", staging + "test-image-tags:2", staging + "test-image-tags:3"}, cfg: sh, layers: []files{marker("test-image-tags")}},
		// Not test/crid's pause image: a spec removes this one by ID.
		{names: []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}, cfg: ocitest.Config{Cmd: []string{"sleep", "2147483647"}}, layers: []files{marker("pause-3.9")}},
	}
	for i := range defs {
		defs[i].layers = append([]files{applets}, defs[i].layers...)
	}
	return defs
}

// build makes def's image on the busybox layer.
func (def imageDef) build(busybox ocitest.Layer) (*ocitest.Image, error) {
	layers := []ocitest.Layer{busybox}
	for _, files := range def.layers {
		l, err := ocitest.FilesLayer(files)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return ocitest.Build(def.cfg, layers...)
}

// splitRef cuts "host/repo:tag" into host, repo and tag.
func splitRef(ref string) (host, repo, tag string) {
	host, rest, _ := strings.Cut(ref, "/")
	i := strings.LastIndexByte(rest, ':')
	return host, rest[:i], rest[i+1:]
}
