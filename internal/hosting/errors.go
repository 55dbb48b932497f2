package hosting

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// The answers a hosted mount gives when it cannot serve: each says which
// mount, why, and what makes it serve again.

// ErrEngineUnreachable marks a start that failed because the engine did
// not answer (it is restarting, or down), which is no fault of the plugin:
// the runtime's, which knows its engine.
var ErrEngineUnreachable = runtime.ErrEngineUnreachable

// engineRetryMax bounds the wait between starts while the engine does not
// answer.
const engineRetryMax = 30 * time.Second

// ErrStillStarting is a write of a mount whose plugin had not started
// within StartWait: the start goes on, and the mount is stored.
var ErrStillStarting = errors.New("its plugin is still starting")

// errContainerGone is why a plugin found exited before any request reached
// it is gone, when the plugin cannot say more.
var errContainerGone = errors.New("its container is gone")

// notFound answers a request for a mount that is not stored, or deleted.
func notFound(name string) error {
	return logical.CodedError(http.StatusNotFound, "no hosted mount "+name)
}

// pendingError answers a request while the mount's special paths differ
// from those Vault enforces for it.
func (hd *handle) pendingError(mountPoint string) error {
	return logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf(
		"the special paths (sudo or unauthenticated) of hosted mount %s differ from those Vault enforces for it: "+
			"run `%s` to have them enforced, then retry", hd.name, fmt.Sprintf(ReloadCommandFormat, mountPoint)))
}

// engineDownError answers a request while the mount's engine does not
// answer.
func (hd *handle) engineDownError() error {
	return logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf("hosted mount %s cannot start now: %s; "+
		"it is tried again from %s", hd.name, hd.reason, hd.retryAt.UTC().Format(time.RFC3339)))
}

// closingError answers a request or a write whose start was abandoned, or
// not begun, because this mount of ours is closing.
func (hd *handle) closingError() error {
	return logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf("hosted mount %s was not started: this mount is closing "+
		"(Vault is sealing, unmounting or reloading it); retry once it is unsealed or mounted again", hd.name))
}

// failedError answers a request while the mount is failed, naming the
// command that restarts it under mountPoint (this mount of ours).
func (hd *handle) failedError(mountPoint string) error {
	return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("hosted mount %s failed: %s; it is tried again from %s; "+
		"after fixing the cause, restart it at once with: vault write %splugins/reload mounts=%s",
		hd.name, hd.reason, hd.crash.retryAt.UTC().Format(time.RFC3339), mountPoint, hd.name))
}

// named is err as a client gets it: saying which mount, with its status
// kept (a start's own errors name the plugin, not the mount).
func (hd *handle) named(err error) error {
	prefix := "hosted mount " + hd.name
	if strings.Contains(err.Error(), prefix) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := prefix + ": " + err.Error()
	if coded := (logical.HTTPCodedError)(nil); errors.As(err, &coded) {
		return logical.CodedError(coded.Code(), msg)
	}
	// A start that failed for the registration's fault is not this
	// request's: a 502, as for the engine's.
	return logical.CodedError(http.StatusBadGateway, msg)
}
