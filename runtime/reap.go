package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
)

// LabelOwner names the process that started a container, as
// "<pid>:<start time>": the pid alone could be reused by another process
// after the owner died, the pair cannot.
const LabelOwner = "io.github.vault-plugin-runtime-catalog.owner"

// LabelOwnerBoot is the boot of the machine the owner runs on (the kernel's
// boot_id): a pid says whether a process lives only on its own machine, and
// an engine may be shared by several (a remote DOCKER_HOST).
const LabelOwnerBoot = "io.github.vault-plugin-runtime-catalog.owner-boot"

// OwnerBoot is this machine's boot as LabelOwnerBoot names it, or "" when
// the kernel does not say.
func OwnerBoot() string {
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(id))
}

// Owner is this process as LabelOwner names it.
func Owner() string { return ownerOf(os.Getpid()) }

// ownerOf is "<pid>:<start time in clock ticks since boot>", or "<pid>:" when
// the process is gone (or /proc cannot tell).
func ownerOf(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return strconv.Itoa(pid) + ":"
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after its closing parenthesis start with field 3.
	stat := string(data)
	fields := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
	// Field 3 is the state: a zombie (Z) or dead (X) process is gone, though
	// its pid and start time stay until its parent reaps it, which a killed
	// Vault never does.
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return strconv.Itoa(pid) + ":"
	}
	return strconv.Itoa(pid) + ":" + fields[19] // field 22, starttime
}

// ownerAlive reports whether the process a LabelOwner value names still runs.
func ownerAlive(owner string) bool {
	pidText, start, ok := strings.Cut(owner, ":")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || start == "" {
		return false
	}
	return ownerOf(pid) == owner
}

// socketRootPrefix names the directories that hold the socket directories
// of one process: /tmp/rc-<pid>-<start time>.
const socketRootPrefix = "rc-"

// OwnSocketRoot is this process's directory for socket directories, made on
// first use. A process killed with SIGKILL cannot remove its sockets; the
// owner in the name lets the next one remove them (ReapSocketRoots).
func OwnSocketRoot() string {
	pid, start, _ := strings.Cut(Owner(), ":")
	dir := filepath.Join(os.TempDir(), socketRootPrefix+pid+"-"+start)
	// 0711: the engine (rootless Docker runs as a user) must reach the
	// socket directories inside, which have their own permissions.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return os.TempDir()
	}
	os.Chmod(dir, 0o711)
	return dir
}

// ReapSocketRoots removes the socket roots of processes that are gone, and
// returns how many.
func ReapSocketRoots() int {
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), socketRootPrefix+"*-*"))
	removed := 0
	for _, root := range roots {
		pid, start, ok := strings.Cut(strings.TrimPrefix(filepath.Base(root), socketRootPrefix), "-")
		if !ok || ownerAlive(pid+":"+start) {
			continue
		}
		if _, err := strconv.Atoi(pid); err != nil {
			continue // not one of ours
		}
		if os.RemoveAll(root) == nil {
			removed++
		}
	}
	return removed
}

// Lister is what reaping needs of an engine besides removal.
type Lister interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerRemove(ctx context.Context, id string, options container.RemoveOptions) error
}

// ReapOrphans removes the plugin containers of this project's that were
// started for clusterID by a process of this machine that is gone (a Vault
// and its plugins killed with SIGKILL leave their containers running).
// Containers of a live process, of another machine, of another cluster, or
// of anything else are never touched. It returns the IDs removed.
func ReapOrphans(ctx context.Context, engine Lister, clusterID string) ([]string, error) {
	list, err := engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelManagedBy+"="+managedByThisPlugin),
		filters.Arg("label", LabelClusterID+"="+clusterID),
	)})
	if err != nil {
		return nil, fmt.Errorf("listing plugin containers: %w", err)
	}
	var removed []string
	boot := OwnerBoot()
	for _, c := range list {
		owner, ok := c.Labels[LabelOwner]
		if !ok || ownerAlive(owner) {
			continue
		}
		if other := c.Labels[LabelOwnerBoot]; other != "" && other != boot {
			continue // another machine's (or boot's) process: its life cannot be told from here
		}
		err := engine.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		if err != nil && !errdefs.IsNotFound(err) && !strings.Contains(err.Error(), "already in progress") {
			return removed, fmt.Errorf("removing orphaned container %s: %w", short(c.ID), err)
		}
		removed = append(removed, c.ID)
	}
	return removed, nil
}
