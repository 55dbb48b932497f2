// Package reqerr is how this plugin says whose fault a failed request is:
// the request's (a 400 naming the field and the rule), a coded error with
// its status (404, 502, 503, 504), or anything else (a 500). The catalog's
// handlers and the host of hosted mounts both answer through it.
package reqerr

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/runtime"
)

// Error is the request's fault: Vault answers 400 with its text, which
// names the field and the rule.
type Error struct{ error }

func (e Error) Unwrap() error { return e.error }

// BadRequest makes err the request's fault.
func BadRequest(err error) error { return Error{err} }

// BadRequestf is BadRequest of a formatted error.
func BadRequestf(format string, args ...interface{}) error {
	return Error{fmt.Errorf(format, args...)}
}

// Is reports whether err is the request's fault.
func Is(err error) bool {
	var re Error
	return errors.As(err, &re)
}

// Respond answers a request that failed: a 400 for the request's fault, a
// coded error (such as 404) with its code, anything else a 500.
func Respond(err error) (*logical.Response, error) {
	if Is(err) {
		return logical.ErrorResponse(err.Error()), nil
	}
	return nil, err
}

// StartFailure says whose fault a failed start of what (a plugin, "secret/kv")
// is: the registration's or its runtime's (a 400 with the reason: a missing
// image, a SHA256 mismatch, an unknown OCI runtime, a plugin that exits or
// does not complete its handshake in time), a
// pull that took too long (a 504), or the engine's (a 502).
func StartFailure(what string, err error) error {
	msg := fmt.Errorf("plugin %s did not start: %w", what, err)
	if errors.Is(err, runtime.ErrPullTimeout) {
		return logical.CodedError(http.StatusGatewayTimeout, msg.Error())
	}
	for _, configErr := range []error{runtime.ErrImageMissing, runtime.ErrSHA256Mismatch, runtime.ErrUnknownOCIRuntime,
		runtime.ErrContainerExited, runtime.ErrStartRefused, runtime.ErrPullFailed, runtime.ErrHandshakeTimeout} {
		if errors.Is(err, configErr) {
			return BadRequest(msg)
		}
	}
	return logical.CodedError(http.StatusBadGateway, msg.Error())
}
