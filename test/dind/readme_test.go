package dind

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/test/ctrd"
)

// crictlConfig is what testdata's configs say that README's pod must say
// too.
type crictlConfig struct {
	Image struct {
		Image string `json:"image"`
	} `json:"image"`
	Command []string `json:"command"`
	Mounts  []struct {
		ContainerPath string `json:"container_path"`
		Readonly      bool   `json:"readonly"`
	} `json:"mounts"`
	Linux struct {
		Resources struct {
			CPUPeriod int64 `json:"cpu_period"`
			CPUQuota  int64 `json:"cpu_quota"`
			Memory    int64 `json:"memory_limit_in_bytes"`
		} `json:"resources"`
		SecurityContext struct {
			Privileged bool `json:"privileged"`
		} `json:"security_context"`
	} `json:"linux"`
}

func readConfig(t *testing.T, name string) crictlConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var c crictlConfig
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
	return c
}

// readmePod is the Kubernetes pod of README's docker-in-docker section:
// its lines, by key (the first of each), comments dropped.
func readmePod(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ctrd.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n### Docker-in-docker\n")
	if !ok {
		t.Fatal(`README.md has no "### Docker-in-docker" section`)
	}
	_, block, ok := strings.Cut(sec, "\n    apiVersion: v1\n")
	if !ok {
		t.Fatal("README's docker-in-docker section has no pod (an indented block from apiVersion: v1)")
	}
	keys := map[string]string{}
	comment := regexp.MustCompile(`\s{2,}#.*$`)
	for _, l := range strings.Split(block, "\n") {
		if !strings.HasPrefix(l, "    ") {
			break
		}
		l = strings.TrimPrefix(strings.TrimSpace(comment.ReplaceAllString(l, "")), "- ")
		if k, v, ok := strings.Cut(l, ": "); ok {
			if _, seen := keys[k]; !seen {
				keys[k] = v
			}
		}
	}
	return keys
}

// TestREADMEPod: README's docker-in-docker pod is the one the suite runs
// (testdata/pod.json and docker.json): runtime class, image, command,
// privilege, limits and the images volume.
func TestREADMEPod(t *testing.T) {
	pod, ctr := readConfig(t, "pod.json"), readConfig(t, "docker.json")
	y := readmePod(t)
	if got := y["runtimeClassName"]; got != netHandler {
		t.Errorf("README's pod: runtimeClassName %q, want %s", got, netHandler)
	}
	if got := y["image"]; got != ctr.Image.Image {
		t.Errorf("README's pod: image %q, testdata's %q", got, ctr.Image.Image)
	}
	// The command is a YAML flow sequence written as JSON.
	var cmd []string
	if err := json.Unmarshal([]byte(y["command"]), &cmd); err != nil || !reflect.DeepEqual(cmd, ctr.Command) {
		t.Errorf("README's pod: command %s (%v), testdata's %q", y["command"], err, ctr.Command)
	}
	if got := y["securityContext"]; got != "{privileged: true}" || !ctr.Linux.SecurityContext.Privileged || !pod.Linux.SecurityContext.Privileged {
		t.Errorf("README's pod: securityContext %q; testdata's container privileged %v, pod %v: want privileged everywhere",
			got, ctr.Linux.SecurityContext.Privileged, pod.Linux.SecurityContext.Privileged)
	}
	m := regexp.MustCompile(`^\{limits: \{cpu: "(\d+)", memory: (\d+)Gi\}\}$`).FindStringSubmatch(y["resources"])
	if m == nil {
		t.Fatalf("README's pod: resources %q, want {limits: {cpu: \"N\", memory: NGi}}", y["resources"])
	}
	cpus, _ := strconv.ParseInt(m[1], 10, 64)
	gib, _ := strconv.ParseInt(m[2], 10, 64)
	for name, c := range map[string]crictlConfig{"pod.json": pod, "docker.json": ctr} {
		r := c.Linux.Resources
		if r.CPUPeriod == 0 || r.CPUQuota != cpus*r.CPUPeriod || r.Memory != gib<<30 {
			t.Errorf("testdata/%s: resources %+v, README's limits cpu %d, memory %d GiB", name, r, cpus, gib)
		}
	}
	if len(ctr.Mounts) != 1 || y["volumeMounts"] != "[{name: images, mountPath: "+ctr.Mounts[0].ContainerPath+", readOnly: "+strconv.FormatBool(ctr.Mounts[0].Readonly)+"}]" {
		t.Errorf("README's pod: volumeMounts %q, testdata's mounts %+v", y["volumeMounts"], ctr.Mounts)
	}
}
