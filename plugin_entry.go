package runtimecatalog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/hashicorp/go-version"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	pluginStoragePrefix = "plugin/"
	pluginEntryFormat   = 1
)

// pluginTypes are the plugin types Vault's catalog knows, sorted.
var pluginTypes = []string{"auth", "database", "secret"}

// pluginEntry is one container plugin: what image to run and with which
// runtime, as Vault's sys/plugins/catalog registers it.
type pluginEntry struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	OCIImage string   `json:"oci_image"`
	Version  string   `json:"version"`
	SHA256   string   `json:"sha256"` // lower-case hex image ID, no "sha256:" prefix
	Command  string   `json:"command"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Runtime  string   `json:"runtime"` // "" means no runtime: default settings with runsc
}

type storedPlugin struct {
	Format int `json:"format"`
	pluginEntry
}

// id is how a plugin is named across types: "secret/kv".
func (p *pluginEntry) id() string {
	return p.Type + "/" + p.Name
}

// envKeys are the names of the plugin's environment variables; a read never
// returns their values, which may be secrets.
func (p *pluginEntry) envKeys() []string {
	keys := make([]string, 0, len(p.Env))
	for _, kv := range p.Env {
		key, _, _ := strings.Cut(kv, "=")
		keys = append(keys, key)
	}
	return keys
}

func (p *pluginEntry) toResponseData() map[string]interface{} {
	return map[string]interface{}{
		"name":      p.Name,
		"type":      p.Type,
		"oci_image": p.OCIImage,
		"version":   p.Version,
		"sha256":    p.SHA256,
		"command":   p.Command,
		"args":      nonNil(p.Args),
		"env":       p.envKeys(),
		"runtime":   p.Runtime,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func validatePluginType(t string) error {
	i := sort.SearchStrings(pluginTypes, t)
	if i == len(pluginTypes) || pluginTypes[i] != t {
		return fmt.Errorf("%q is not a supported plugin type: use one of %s", t, strings.Join(pluginTypes, ", "))
	}
	return nil
}

// validate checks every field but the runtime's existence, which needs the
// catalog. It also normalises the sha256.
func (p *pluginEntry) validate() error {
	if err := validatePluginType(p.Type); err != nil {
		return err
	}
	if err := validateName("plugin", p.Name); err != nil {
		return err
	}
	if err := validateImage(p.OCIImage); err != nil {
		return err
	}
	if p.Version == "" {
		return errors.New(`version is required: the image tag is the version without its leading "v"`)
	}
	if _, err := version.NewSemver(p.Version); err != nil {
		return fmt.Errorf("version %q is not a semantic version: %w", p.Version, err)
	}
	if err := p.normaliseSHA256(); err != nil {
		return err
	}
	if strings.ContainsRune(p.Command, 0) {
		return errors.New("command must not contain a NUL byte")
	}
	for _, kv := range p.Env {
		key, _, ok := strings.Cut(kv, "=")
		if !ok || key == "" || strings.ContainsRune(kv, 0) {
			return fmt.Errorf("env entry %q is not KEY=VALUE with a non-empty KEY", redactEnv(kv))
		}
	}
	if p.Runtime != "" {
		if err := validateName("runtime", p.Runtime); err != nil {
			return err
		}
	}
	return nil
}

// redactEnv hides what may be a secret in an error message.
func redactEnv(kv string) string {
	if len(kv) > 16 {
		return kv[:16] + "…"
	}
	return kv
}

func validateImage(image string) error {
	if image == "" {
		return errors.New("oci_image is required: the image to run, without a tag")
	}
	if strings.Contains(image, ":") {
		return fmt.Errorf(`oci_image %q must not contain ":": give the image without a tag, the tag comes from version`, image)
	}
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil || !reference.IsNameOnly(ref) {
		return fmt.Errorf("oci_image %q is not an image name (lower-case letters, digits and separators, e.g. registry.example.com/team/plugin)", image)
	}
	return nil
}

func (p *pluginEntry) normaliseSHA256() error {
	if p.SHA256 == "" {
		return nil
	}
	sum := strings.ToLower(strings.TrimPrefix(p.SHA256, "sha256:"))
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return fmt.Errorf(`sha256 %q is not a SHA-256 image ID: 64 hex characters, optionally prefixed with "sha256:"`, p.SHA256)
	}
	p.SHA256 = sum
	return nil
}

func pluginStorageKey(pluginType, name string) string {
	return pluginStoragePrefix + pluginType + "/" + name
}

func decodePlugin(se *logical.StorageEntry, err error) (*pluginEntry, error) {
	if err != nil {
		return nil, fmt.Errorf("reading plugin: %w", err)
	}
	if se == nil {
		return nil, nil
	}
	var stored storedPlugin
	if err := json.Unmarshal(se.Value, &stored); err != nil {
		return nil, fmt.Errorf("decoding plugin %q: %w", se.Key, err)
	}
	if stored.Format != pluginEntryFormat {
		return nil, fmt.Errorf("plugin %q is stored in format %d; this plugin reads format %d",
			se.Key, stored.Format, pluginEntryFormat)
	}
	return &stored.pluginEntry, nil
}

func putPlugin(ctx context.Context, s logical.Storage, p *pluginEntry) error {
	se, err := logical.StorageEntryJSON(pluginStorageKey(p.Type, p.Name), storedPlugin{Format: pluginEntryFormat, pluginEntry: *p})
	if err != nil {
		return fmt.Errorf("encoding plugin %q: %w", p.id(), err)
	}
	if err := s.Put(ctx, se); err != nil {
		return fmt.Errorf("storing plugin %q: %w", p.id(), err)
	}
	return nil
}

func deletePlugin(ctx context.Context, s logical.Storage, pluginType, name string) error {
	if err := s.Delete(ctx, pluginStorageKey(pluginType, name)); err != nil {
		return fmt.Errorf("deleting plugin %q: %w", pluginType+"/"+name, err)
	}
	return nil
}
