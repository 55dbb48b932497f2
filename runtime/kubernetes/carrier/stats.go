package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime/kubernetes/internal/wire"
)

// The plugin container's figures, for the host (hosted/NAME, the metrics):
// a cluster's metrics API may not be there, and the kubelet's own needs a
// permission over the whole node; the container's cgroup, which the
// container runtime mounts read-only at /sys/fs/cgroup (runc shows the
// container's own cgroup there, gVisor its own accounting), says them as
// Docker's stats do.

// Where the figures are read: the container's cgroup, and the memory the
// container sees (the limit of a container with none). A carrier takes
// them at its start (tests point them elsewhere).
var (
	cgroupRoot = "/sys/fs/cgroup"
	meminfo    = "/proc/meminfo"
)

// figures reads a container's figures and says once, on stderr (the pod's
// log, which reaches Vault's), why one cannot be read.
type figures struct {
	root, meminfo, pod string
	stderr             io.Writer
	mu                 sync.Mutex
	said               map[string]bool
}

func newFigures(stderr io.Writer) *figures {
	pod, _ := os.Hostname() // a pod's host name is its name
	return &figures{root: cgroupRoot, meminfo: meminfo, pod: pod, stderr: stderr, said: map[string]bool{}}
}

// stats sends a sample at once and then every wire.StatsInterval, until
// the host closes the connection, stops reading, or the plugin ends.
func (c *carrier) stats(conn net.Conn) {
	defer conn.Close()
	go func() {
		// Nothing more comes from the host: its close ends the samples.
		var b [1]byte
		conn.Read(b[:])
		conn.Close()
	}()
	enc := json.NewEncoder(conn)
	tick := time.NewTicker(wire.StatsInterval)
	defer tick.Stop()
	for {
		// A host gone without a word (its node lost) ends the samples
		// within seconds, not at TCP's own limit.
		conn.SetWriteDeadline(time.Now().Add(5 * wire.StatsInterval))
		if err := enc.Encode(c.figures.sample()); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-c.exited:
			return
		}
	}
}

// sample reads the container's figures: memory in use less the inactive
// page cache (what `docker stats` shows), its limit (the machine's memory
// without one), CPU time and tasks; under cgroup v2 or v1.
func (f *figures) sample() wire.Stats {
	s := wire.Stats{Pod: f.pod}
	miss := func(name string, err error) {
		s.Missing = append(s.Missing, name)
		f.mu.Lock()
		said := f.said[name]
		f.said[name] = true
		f.mu.Unlock()
		if !said {
			fmt.Fprintf(f.stderr, "carrier: the container's %s cannot be read: %v\n", name, err)
		}
	}
	v2 := exists(filepath.Join(f.root, "cgroup.controllers"))
	file := func(v2name, v1name string) string {
		if v2 {
			return filepath.Join(f.root, v2name)
		}
		return filepath.Join(f.root, v1name)
	}
	if used, err := readUint(file("memory.current", "memory/memory.usage_in_bytes")); err == nil {
		key := "total_inactive_file"
		if v2 {
			key = "inactive_file"
		}
		inactive, _ := statField(file("memory.stat", "memory/memory.stat"), key)
		if inactive < used {
			used -= inactive
		}
		s.MemoryBytes = used
	} else {
		miss(wire.FigureMemory, err)
	}
	limit, err := readUint(file("memory.max", "memory/memory.limit_in_bytes"))
	total, totalErr := f.memTotal()
	switch {
	case (err != nil || limit >= total) && totalErr == nil: // "max", or v1's page-rounded huge number
		s.MemoryLimitBytes = total
	case err == nil:
		s.MemoryLimitBytes = limit
	default:
		miss(wire.FigureMemoryLimit, errors.Join(err, totalErr))
	}
	if v2 {
		usec, err := statField(file("cpu.stat", ""), "usage_usec")
		if err == nil {
			s.CPUSeconds = float64(usec) / 1e6
		} else {
			miss(wire.FigureCPU, err)
		}
	} else {
		ns, err := readUint(filepath.Join(f.root, "cpuacct", "cpuacct.usage"))
		if err != nil {
			ns, err = readUint(filepath.Join(f.root, "cpu,cpuacct", "cpuacct.usage"))
		}
		if err == nil {
			s.CPUSeconds = float64(ns) / 1e9
		} else {
			miss(wire.FigureCPU, err)
		}
	}
	if pids, err := readUint(file("pids.current", "pids/pids.current")); err == nil {
		s.Pids = pids
	} else {
		miss(wire.FigurePids, err)
	}
	return s
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// statField is the number after key in lines of "key number [unit]" (a
// cgroup's stat files, /proc/meminfo).
func statField(path, key string) (uint64, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	s := bufio.NewScanner(file)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == key {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, key)
}

// memTotal is the memory the container sees, in bytes.
func (f *figures) memTotal() (uint64, error) {
	kb, err := statField(f.meminfo, "MemTotal:")
	if err != nil {
		return 0, err
	}
	if kb == 0 {
		return 0, errors.New("MemTotal is 0")
	}
	return kb * 1024, nil
}
