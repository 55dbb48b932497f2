package hosting

// The tokens of a hosted auth mount are its own.

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"
)

// TokenMountKey is the key of a token's internal data (Auth.InternalData,
// which Vault stores with the token and hands back on every renewal) under
// which the host records the UUID of the hosted mount that made it.
//
// Vault routes a token's renewal by the path it logged in at
// (auth/runtimes/mounts/NAME/login). A hosted mount deleted and made again
// under its name would otherwise renew the old mount's tokens, which Vault
// never revoked (it revokes an auth mount's tokens only when the mount
// itself is disabled), as soon as its plugin's own check passed: a role of
// the same name would do. The UUID is a mount's for good and never reused.
const TokenMountKey = "runtime_catalog_hosted_mount"

// tagAuth records in a's internal data that mount uuid made it.
func tagAuth(a *logical.Auth, uuid string) {
	if a == nil {
		return
	}
	if a.InternalData == nil {
		a.InternalData = map[string]interface{}{}
	}
	a.InternalData[TokenMountKey] = uuid
}

// tagAuthProto is tagAuth for an answer as protocol buffers, whose internal
// data is JSON (decoded and encoded only for answers with auth: logins and
// renewals, not reads).
func tagAuthProto(a *pb.Auth, uuid string) error {
	if a == nil {
		return nil
	}
	data, err := internalData(a)
	if err != nil {
		return fmt.Errorf("decoding the internal data of a hosted plugin's auth: %w", err)
	}
	data[TokenMountKey] = uuid
	encoded, err := json.Marshal(data)
	if err != nil {
		return err
	}
	a.InternalData = string(encoded)
	return nil
}

// renewable checks that a renewal's token was made by the hosted mount of
// uuid now named name, before the renewal reaches its plugin.
func renewable(internalData map[string]interface{}, name, uuid string) error {
	if internalData[TokenMountKey] == uuid {
		return nil
	}
	return logical.CodedError(http.StatusBadRequest, fmt.Sprintf("this token was made by an earlier hosted mount named %s, since deleted: "+
		"it cannot be renewed by the mount of that name now", name))
}

// renewableProto is renewable for a renewal as protocol buffers.
func renewableProto(a *pb.Auth, name, uuid string) error {
	data, err := internalData(a)
	if err != nil {
		return fmt.Errorf("decoding the internal data of a token to renew: %w", err)
	}
	return renewable(data, name, uuid)
}

// internalData is a's internal data, which protocol buffers carry as JSON.
func internalData(a *pb.Auth) (map[string]interface{}, error) {
	data := map[string]interface{}{}
	if a.InternalData == "" {
		return data, nil
	}
	return data, json.Unmarshal([]byte(a.InternalData), &data)
}
