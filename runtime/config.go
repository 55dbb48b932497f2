// Package runtime runs a container plugin with its plugin runtime as a
// go-plugin plugin, on an engine of any kind (Engine): the plugin and
// runtime entities and their rules, the start through go-plugin, exits and
// usage, and the errors callers test. Each kind of engine is a package of
// its own under it. It knows nothing of Vault's HTTP paths.
package runtime

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

const (
	// PluginSocketDir is where the plugin sees the host's socket directory.
	PluginSocketDir = "/tmp/go-plugin-container"

	// DefaultOCIRuntime is gVisor's runtime, Vault's default.
	DefaultOCIRuntime = "runsc"

	// DefaultPidsLimit bounds the processes of one plugin container: a Go
	// plugin needs one process; this leaves room without allowing a fork bomb.
	DefaultPidsLimit = 64

	// Vault's container labels.
	LabelVaultPID      = "com.hashicorp.vault.pid"
	LabelClusterID     = "com.hashicorp.vault.cluster.id"
	LabelPluginName    = "com.hashicorp.vault.plugin.name"
	LabelPluginType    = "com.hashicorp.vault.plugin.type"
	LabelPluginVersion = "com.hashicorp.vault.plugin.version"
	LabelManagedBy     = "io.github.vault-plugin-runtime-catalog.managed-by"
	LabelPluginRuntime = "io.github.vault-plugin-runtime-catalog.runtime"
	// ManagedByThisPlugin is LabelManagedBy's value on this project's containers.
	ManagedByThisPlugin = "vault-plugin-runtime-catalog"

	envProtocolVersions = "PLUGIN_PROTOCOL_VERSIONS"
)

// Plugin is what the runtime package needs of a registered container plugin.
// The JSON names are those of Vault's plugin catalog API, so that the
// catalog can embed a Plugin as its entity and name each field once.
type Plugin struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`      // auth, database or secret
	Image   string   `json:"oci_image"` // without a tag
	Version string   `json:"version"`   // the image tag is Version without its leading "v"
	SHA256  string   `json:"sha256"`    // hex image ID, optional
	Command string   `json:"command"`
	Args    []string `json:"args"`
	Env     []string `json:"env"` // KEY=VALUE
	// PullPolicy says whether a start may pull the image: PullNever ("" too)
	// or PullMissing.
	PullPolicy string `json:"pull_policy,omitempty"`
	// ImageDigest is the manifest digest ("sha256:…") a pull is pinned to.
	ImageDigest string `json:"image_digest,omitempty"`
}

// Runtime is a plugin runtime's settings; the zero value is "no runtime".
// The JSON names are those of Vault's plugin runtime API, for the same
// reason as Plugin's.
type Runtime struct {
	Name         string `json:"name"`
	OCIRuntime   string `json:"oci_runtime"` // "" means DefaultOCIRuntime
	CgroupParent string `json:"cgroup_parent"`
	NanoCPUs     int64  `json:"cpu_nanos"`
	MemoryBytes  int64  `json:"memory_bytes"`
	Rootless     bool   `json:"rootless"`
	// Network gives the containers the engine's default network, for
	// plugins that reach services outside; off, they have loopback only.
	Network bool `json:"network,omitempty"`
	// Engine is the address of the engine that runs the containers, a
	// unix:// socket speaking the Docker Engine API (a Podman service, say);
	// empty means the Docker Engine the environment names (DOCKER_HOST, or
	// the default socket).
	Engine string `json:"engine,omitempty"`
}

// Host is what comes from the process that runs the plugin.
type Host struct {
	PID       int
	Owner     string // this process as LabelOwner names it: Owner()
	OwnerBoot string // its machine's boot: OwnerBoot()
	ClusterID string
	GroupID   int      // the host's egid, added to the container so it can reach the socket; 0 is never added
	MLock     bool     // adds IPC_LOCK so the plugin can mlock
	BaseEnv   []string // go-plugin's handshake variables
	SDKEnv    []string // Vault's SDK variables (VAULT_VERSION, …)
	SocketDir string   // the host directory go-plugin puts its sockets in
	// Redact names variables whose values are shown as RedactedValue: a
	// preview's, for the registration's own (they may be secrets, which
	// reads never show).
	Redact []string
}

// RedactedValue stands for the value of a registered env variable in a
// preview.
const RedactedValue = "<redacted: set by the registration>"

// Hardening is what this project adds to Vault's container settings. Each is
// on in DefaultHardening.
type Hardening struct {
	NoNewPrivileges bool
	ReadonlyRootfs  bool
	PidsLimit       int64 // 0: no limit
}

// DefaultHardening is what every plugin container gets: no privilege
// escalation, a read-only root filesystem and a bound on its processes. A
// function, not a variable, so no caller can change it for every other.
func DefaultHardening() Hardening {
	return Hardening{NoNewPrivileges: true, ReadonlyRootfs: true, PidsLimit: DefaultPidsLimit}
}

// CheckImageName says why image cannot be a plugin's image, which is a
// name alone, registry-qualified or not (127.0.0.1:5000/team/kv): the tag
// comes from the version, the digest from its own field.
func CheckImageName(image string) error {
	ref, err := reference.ParseNormalizedNamed(image)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not an image name (lower-case letters, digits and separators, optionally "+
			"after a registry host and port, e.g. registry.example.com/team/plugin or 127.0.0.1:5000/plugin)", image)
	case reference.IsNameOnly(ref):
		return nil
	case strings.Contains(image, "@"):
		return fmt.Errorf("%q carries a digest: give the image without it, and the manifest digest as image_digest", image)
	default:
		return fmt.Errorf("%q carries a tag: give the image without it, the tag comes from version", image)
	}
}

// ImageRef is the reference the container is created from: the exact image
// ID when a sha256 is given, else image:tag.
func (p Plugin) ImageRef() string {
	if p.SHA256 != "" {
		return "sha256:" + strings.TrimPrefix(p.SHA256, "sha256:")
	}
	return p.TaggedImage()
}

// TaggedImage is image:tag, the tag being the version without its "v".
func (p Plugin) TaggedImage() string {
	if tag := strings.TrimPrefix(p.Version, "v"); tag != "" {
		return p.Image + ":" + tag
	}
	return p.Image
}

// EffectiveOCIRuntime is the OCI runtime the container gets.
func (r Runtime) EffectiveOCIRuntime() string {
	if r.OCIRuntime == "" {
		return DefaultOCIRuntime
	}
	return r.OCIRuntime
}

// ContainerEnv layers the environment, later layers winning over earlier
// ones: the plugin's own env, then Vault's SDK variables, then go-plugin's
// handshake variables, then the socket directory as the container sees it.
// What the host needs for the handshake can therefore never be overridden by
// a registration. Duplicate keys are removed explicitly (the OCI runtime
// would keep the last, but Go's os.Getenv reads the first), and nothing of
// the host's own environment is passed.
func ContainerEnv(p Plugin, h Host) []string {
	var all []string
	all = append(all, p.Env...)
	all = append(all, h.SDKEnv...)
	all = append(all, h.BaseEnv...)
	all = append(all, "PLUGIN_UNIX_SOCKET_DIR="+PluginSocketDir)
	env := sortProtocolVersions(DedupEnv(all))
	for i, kv := range env {
		if key, _, _ := strings.Cut(kv, "="); slices.Contains(h.Redact, key) {
			env[i] = key + "=" + RedactedValue
		}
	}
	return env
}

// sortProtocolVersions puts PLUGIN_PROTOCOL_VERSIONS in ascending order.
// go-plugin joins them from a map, so their order changes from one start to
// the next; the plugin takes the highest it supports whatever the order, and
// a stable order lets run-config show exactly what a start sends.
func sortProtocolVersions(env []string) []string {
	for i, kv := range env {
		if versions, ok := strings.CutPrefix(kv, envProtocolVersions+"="); ok {
			list := strings.Split(versions, ",")
			sort.Slice(list, func(a, b int) bool {
				x, errX := strconv.Atoi(list[a])
				y, errY := strconv.Atoi(list[b])
				if errX != nil || errY != nil {
					return list[a] < list[b]
				}
				return x < y
			})
			env[i] = envProtocolVersions + "=" + strings.Join(list, ",")
		}
	}
	return env
}

// DedupEnv keeps, for each key, only its last KEY=VALUE, in the order of
// those last occurrences.
func DedupEnv(env []string) []string {
	last := make(map[string]int, len(env))
	for i, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		last[key] = i
	}
	out := make([]string, 0, len(last))
	for i, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		if last[key] == i {
			out = append(out, kv)
		}
	}
	return out
}

// Labels are the labels of p's container run with r on host h: Vault's,
// and this project's, which reaping reads.
func Labels(p Plugin, r Runtime, h Host) map[string]string {
	l := map[string]string{
		LabelVaultPID:      strconv.Itoa(h.PID),
		LabelClusterID:     h.ClusterID,
		LabelPluginName:    p.Name,
		LabelPluginType:    p.Type,
		LabelPluginVersion: p.Version,
		LabelManagedBy:     ManagedByThisPlugin,
	}
	if h.Owner != "" {
		l[LabelOwner] = h.Owner
	}
	if h.OwnerBoot != "" {
		l[LabelOwnerBoot] = h.OwnerBoot
	}
	if r.Name != "" {
		l[LabelPluginRuntime] = r.Name
	}
	return l
}
