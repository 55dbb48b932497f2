package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/wire"
)

// fakeCgroup writes files under a temporary cgroup root and a meminfo of
// 2 GiB, for sample to read.
func fakeCgroup(t *testing.T, files map[string]string) {
	t.Helper()
	root := t.TempDir()
	for name, text := range files {
		path := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mem := filepath.Join(root, "meminfo")
	os.WriteFile(mem, []byte("MemTotal:        2097152 kB\nMemFree:          1000 kB\n"), 0o644)
	oldRoot, oldMem := cgroupRoot, meminfo
	cgroupRoot, meminfo = root, mem
	t.Cleanup(func() { cgroupRoot, meminfo = oldRoot, oldMem })
}

// The container's figures, as Docker's stats say them: memory in use less
// the inactive page cache, the limit (the machine's memory without one),
// CPU seconds and tasks, under cgroup v1 and v2; what cannot be read is
// named missing, not shown as zero.
func TestSampleFromTheCgroup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  wire.Stats
	}{
		{"v1, no limit", map[string]string{
			"memory/memory.usage_in_bytes": "10485760\n",
			"memory/memory.stat":           "cache 4096\ntotal_inactive_file 2097152\n",
			"memory/memory.limit_in_bytes": "9223372036854771712\n",
			"cpu,cpuacct/cpuacct.usage":    "2500000000\n",
			"pids/pids.current":            "7\n",
		}, wire.Stats{MemoryBytes: 8 << 20, MemoryLimitBytes: 2 << 30, CPUSeconds: 2.5, Pids: 7}},
		{"v2, a limit", map[string]string{
			"cgroup.controllers": "cpu memory pids\n",
			"memory.current":     "6291456\n",
			"memory.stat":        "anon 4194304\ninactive_file 1048576\n",
			"memory.max":         "67108864\n",
			"cpu.stat":           "usage_usec 1500000\nuser_usec 1000000\n",
			"pids.current":       "3\n",
		}, wire.Stats{MemoryBytes: 5 << 20, MemoryLimitBytes: 64 << 20, CPUSeconds: 1.5, Pids: 3}},
		{"v2, max", map[string]string{
			"cgroup.controllers": "memory\n", "memory.current": "1048576\n", "memory.max": "max\n",
		}, wire.Stats{MemoryBytes: 1 << 20, MemoryLimitBytes: 2 << 30, Missing: []string{wire.FigureCPU, wire.FigurePids}}},
		{"nothing mounted", nil, wire.Stats{MemoryLimitBytes: 2 << 30, Missing: []string{wire.FigureMemory, wire.FigureCPU, wire.FigurePids}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeCgroup(t, tc.files)
			var stderr bytes.Buffer
			f := newFigures(&stderr)
			f.pod = ""
			if got := f.sample(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("sample %+v, want %+v", got, tc.want)
			}
			// Why a figure is missing is said once, naming it.
			f.sample()
			for _, name := range tc.want.Missing {
				if n := strings.Count(stderr.String(), "the container's "+name+" cannot be read"); n != 1 {
					t.Errorf("%s: said %d times: %s", name, n, stderr.String())
				}
			}
		})
	}
}

// Requests to the carrier never take the plugin's session: a tunnel asked
// before it (one meant for an earlier pod at this address) is refused, the
// figures are answered, and the host's session, coming after both, is
// still the plugin's.
func TestRequestsBeforeTheSession(t *testing.T) {
	fakeCgroup(t, map[string]string{"pids/pids.current": "2\n"})
	c, _, stderr, port := startFake(t, "127.0.0.1")
	if !closedUnread(dialAndSay(t, port, "TUNNEL DATA abc\n")) {
		t.Fatal("a tunnel before the session was served")
	}
	if !strings.Contains(stderr.String(), "a tunnel before the plugin's session") {
		t.Errorf("stderr: %s", stderr)
	}
	stats := dialAndSay(t, port, wire.StatsRequest+"\n")
	r := bufio.NewReader(stats)
	for i := 0; i < 2; i++ { // at once, then a second later
		line, err := r.ReadString('\n')
		var s wire.Stats
		host, _ := os.Hostname()
		if err != nil || json.Unmarshal([]byte(line), &s) != nil || s.Pids != 2 || s.Pod != host {
			t.Fatalf("sample %d: %q, %v", i, line, err)
		}
	}
	stats.Close()
	host := sessionFrom(t, "127.0.0.1", port)
	fmt.Fprintln(host, "ping")
	if line, err := bufio.NewReader(host).ReadString('\n'); err != nil || line != "echo ping\n" {
		t.Fatalf("the host's session after the requests: %q, %v (stderr: %s)", line, err, stderr)
	}
	fmt.Fprintln(host, "exit 0")
	c.wait()
}
