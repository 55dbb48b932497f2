package runtimecatalog

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/go-version"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/reqerr"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// pluginTypes are the plugin types Vault's catalog knows, sorted.
var pluginTypes = []string{"auth", "database", "secret"}

// pluginID names a plugin across types.
type pluginID struct {
	Type, Name string
}

// String is how a plugin is named in keys, messages and storage: "secret/kv".
func (id pluginID) String() string { return id.Type + "/" + id.Name }

// pluginEntry is one container plugin: what image to run and with which
// runtime, as Vault's sys/plugins/catalog registers it. What the container
// runs is the runtime package's own Plugin, so what is stored is exactly
// what a start uses.
type pluginEntry struct {
	runtime.Plugin
	Runtime string `json:"runtime"` // "" means no runtime: default settings with runsc
}

func newPluginEntry(id pluginID) *pluginEntry {
	return &pluginEntry{Plugin: runtime.Plugin{Name: id.Name, Type: id.Type}}
}

func (p *pluginEntry) id() pluginID { return pluginID{Type: p.Type, Name: p.Name} }

// view is the plugin as responses show it: the names of its environment
// variables, never their values, which may be secrets.
func (p *pluginEntry) view() pluginEntry {
	v := *p
	v.Env = make([]string, 0, len(p.Env))
	for _, kv := range p.Env {
		key, _, _ := strings.Cut(kv, "=")
		v.Env = append(v.Env, key)
	}
	if v.Args == nil {
		v.Args = []string{}
	}
	return v
}

func (p *pluginEntry) toResponseData() map[string]interface{} {
	v := p.view()
	return fieldData(&v)
}

func validatePluginType(t string) error {
	i := sort.SearchStrings(pluginTypes, t)
	if i == len(pluginTypes) || pluginTypes[i] != t {
		return reqerr.BadRequestf("%q is not a supported plugin type: use one of %s", t, strings.Join(pluginTypes, ", "))
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
	if err := validateImage(p.Image); err != nil {
		return reqerr.BadRequest(err)
	}
	if p.Version == "" {
		return reqerr.BadRequest(errors.New(`version is required: the image tag is the version without its leading "v"`))
	}
	if _, err := version.NewSemver(p.Version); err != nil {
		return reqerr.BadRequestf("version %q is not a semantic version: %w", p.Version, err)
	}
	// go-version takes any number of numbers; a semantic version has at
	// most MAJOR.MINOR.PATCH.
	if n := len(strings.Split(strings.SplitN(strings.SplitN(strings.TrimPrefix(p.Version, "v"), "-", 2)[0], "+", 2)[0], ".")); n > 3 {
		return reqerr.BadRequestf("version %q is not a semantic version: it has %d numbers, at most 3 (MAJOR.MINOR.PATCH)", p.Version, n)
	}
	if tag := strings.TrimPrefix(p.Version, "v"); !imageTagRegex.MatchString(tag) {
		return reqerr.BadRequestf("version %q cannot be an image tag (%q): a tag has letters, digits, '_', '.' and '-', "+
			"at most 128, and does not start with '.' or '-' (no '+build' metadata)", p.Version, tag)
	}
	if err := p.normaliseSHA256(); err != nil {
		return reqerr.BadRequest(err)
	}
	if err := p.validatePull(); err != nil {
		return err
	}
	if err := validateExecStrings(p.Command, p.Args, p.Env); err != nil {
		return err
	}
	for _, kv := range p.Env {
		key, _, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			return reqerr.BadRequestf("env entry %q is not KEY=VALUE with a non-empty KEY", redactEnv(kv))
		}
	}
	if p.Runtime != "" {
		if err := validateName("runtime", p.Runtime); err != nil {
			return err
		}
	}
	return nil
}

var manifestDigestRegex = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// validatePull checks how the image may be pulled: never a floating tag
// without a check, so pulling needs the image ID to check against.
func (p *pluginEntry) validatePull() error {
	switch p.PullPolicy {
	case "", runtime.PullNever, runtime.PullMissing:
	default:
		return reqerr.BadRequestf("pull_policy %q is not a pull policy: use %q (the default: the image must be on the engine) or %q "+
			"(pulled when the engine lacks it, then checked against sha256)", p.PullPolicy, runtime.PullNever, runtime.PullMissing)
	}
	if p.ImageDigest != "" && !manifestDigestRegex.MatchString(p.ImageDigest) {
		return reqerr.BadRequestf(`image_digest %q is not a manifest digest: "sha256:" and 64 lower-case hex characters, `+
			`as the registry gives it (docker push prints it; RepoDigests shows it)`, p.ImageDigest)
	}
	if p.PullPolicy == runtime.PullMissing && p.SHA256 == "" {
		return reqerr.BadRequest(errors.New("pull_policy missing needs sha256, the image ID a pulled image is checked against " +
			"(docker images --no-trunc -q IMAGE): a pull is never taken on trust"))
	}
	return nil
}

// The kernel's limits on what a process is started with (execve): each
// string at most MAX_ARG_STRLEN (32 pages, with its NUL), all of them
// together within ARG_MAX (a quarter of an 8 MiB stack). Half of that is
// left to the plugin, the rest to the environment Vault and go-plugin add.
const (
	maxExecString = 128*1024 - 1
	maxExecTotal  = 1 << 20
)

// imageTagRegex is the Docker reference grammar's tag.
var imageTagRegex = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// validateExecStrings refuses a command, args or env the kernel would refuse
// to start the plugin with.
func validateExecStrings(command string, args, env []string) error {
	total := len(command) + 1
	check := func(field string, i int, s string) error {
		where := field
		if i >= 0 {
			where = fmt.Sprintf("%s[%d]", field, i)
		}
		if strings.ContainsRune(s, 0) {
			return reqerr.BadRequestf("%s must not contain a NUL byte", where)
		}
		if len(s) > maxExecString {
			return reqerr.BadRequestf("%s is %d bytes: the kernel starts a process with strings of at most %d bytes", where, len(s), maxExecString)
		}
		total += len(s) + 1
		return nil
	}
	if err := check("command", -1, command); err != nil {
		return err
	}
	for i, a := range args {
		if err := check("args", i, a); err != nil {
			return err
		}
	}
	for i, kv := range env {
		if strings.ContainsRune(kv, 0) {
			return reqerr.BadRequestf("env[%d] (%q) must not contain a NUL byte", i, redactEnv(strings.ReplaceAll(kv, "\x00", "")))
		}
		if err := check("env", i, kv); err != nil {
			return err
		}
	}
	if total > maxExecTotal {
		return reqerr.BadRequestf("command, args and env are %d bytes together: at most %d, so that the plugin can start "+
			"(the kernel's limit is shared with the environment Vault and go-plugin add)", total, maxExecTotal)
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
	if err := runtime.CheckImageName(image); err != nil {
		return fmt.Errorf("oci_image %w", err)
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
