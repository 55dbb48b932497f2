package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// Orphaned reports whether a plugin container whose labels (or
// annotations) are these was started by a process of this machine that is
// gone: a Vault and its plugins killed with SIGKILL leave their containers
// running. A container of a live process, or of another machine (or boot),
// whose owner's life cannot be told from here, is not.
func Orphaned(labels map[string]string) bool {
	owner, ok := labels[LabelOwner]
	if !ok || ownerAlive(owner) {
		return false
	}
	other := labels[LabelOwnerBoot]
	return other == "" || other == OwnerBoot()
}
