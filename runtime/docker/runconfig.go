package docker

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// RunConfig is a complete Docker Engine API container create request.
type RunConfig struct {
	Config           *container.Config         `json:"config"`
	HostConfig       *container.HostConfig     `json:"host_config"`
	NetworkingConfig *network.NetworkingConfig `json:"networking_config"`
}

// BuildRunConfig builds the create request for p run with r on host h.
func BuildRunConfig(p runtime.Plugin, r runtime.Runtime, h runtime.Host, hard runtime.Hardening) (*RunConfig, error) {
	if p.Image == "" {
		return nil, errors.New("plugin has no image")
	}
	if err := runtime.CheckImageName(p.Image); err != nil {
		return nil, fmt.Errorf("image %w", err)
	}
	if h.SocketDir == "" {
		return nil, errors.New("no host socket directory")
	}

	cfg := &container.Config{
		Image:  p.ImageRef(),
		Env:    runtime.ContainerEnv(p, h),
		Labels: runtime.Labels(p, r, h),
		// A plugin talks to Vault over the socket directory; a network is
		// only for one that asks (Runtime.Network).
		NetworkDisabled: !r.Network,
	}
	if p.Command != "" {
		cfg.Entrypoint = []string{p.Command}
	}
	if len(p.Args) > 0 {
		cfg.Cmd = append([]string(nil), p.Args...)
		cfg.ArgsEscaped = true
	}

	host := &container.HostConfig{
		Runtime:       r.EffectiveOCIRuntime(),
		AutoRemove:    true,                      // plugin containers are ephemeral
		RestartPolicy: container.RestartPolicy{}, // never: Vault restarts plugins itself
		CapDrop:       []string{"ALL"},
		Resources: container.Resources{
			NanoCPUs:     r.NanoCPUs,
			Memory:       r.MemoryBytes,
			CgroupParent: r.CgroupParent,
		},
		Mounts: []mount.Mount{{
			Type:        mount.TypeBind,
			Source:      h.SocketDir,
			Target:      runtime.PluginSocketDir,
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationPrivate, NonRecursive: true},
			Consistency: mount.ConsistencyDefault,
		}},
		ReadonlyRootfs: hard.ReadonlyRootfs,
	}
	if !r.Network {
		// Said twice: Podman ignores NetworkDisabled and would put the
		// container on its bridge; "none" leaves it loopback only.
		host.NetworkMode = network.NetworkNone
	}
	if h.MLock {
		host.CapAdd = append(host.CapAdd, "IPC_LOCK")
	}
	if r.Rootless {
		// The container's root is not the host's: it needs DAC_OVERRIDE to
		// use the socket directory, which also gets a default ACL.
		host.CapAdd = append(host.CapAdd, "DAC_OVERRIDE")
	}
	if h.GroupID != 0 {
		host.GroupAdd = []string{strconv.Itoa(h.GroupID)}
	}
	if hard.NoNewPrivileges {
		host.SecurityOpt = []string{"no-new-privileges"}
	}
	if hard.PidsLimit > 0 {
		limit := hard.PidsLimit
		host.Resources.PidsLimit = &limit
	}

	return &RunConfig{Config: cfg, HostConfig: host, NetworkingConfig: &network.NetworkingConfig{}}, nil
}
