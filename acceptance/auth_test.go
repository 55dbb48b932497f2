package acceptance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/testimage"
	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/vaulttest"
)

// signer signs JWTs with a P-256 key the test generates, as an identity
// provider would.
type signer struct {
	key *ecdsa.PrivateKey
	jose.Signer
}

func newSigner(t *testing.T) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return signer{key, s}
}

// publicPEM writes the signer's public key as PEM into dir, for
// jwt_validation_pubkeys=@file.
func (s signer) publicPEM(t *testing.T, dir string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// token is a JWT for subject and audience, valid from an hour before until
// expires.
func (s signer) token(t *testing.T, subject, audience string, expires time.Time) string {
	t.Helper()
	claims := jwt.Claims{
		Subject: subject, Audience: jwt.Audience{audience}, Issuer: "rc-test-idp",
		IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)), NotBefore: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
		Expiry: jwt.NewNumericDate(expires),
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jwtLogin logs in through the hosted JWT auth method at
// auth/runtimes/mounts/jwt with role dev, unauthenticated, as a client
// does; the result is decoded when the login succeeded.
func jwtLogin(t *testing.T, v *vaulttest.Server, jwt string) (loginResult, string, int) {
	t.Helper()
	out, errOut, code := v.RunAs(t, "", "write", "-format=json", "auth/runtimes/mounts/jwt/login", "role=dev", "jwt="+jwt)
	var r loginResult
	if code == 0 {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("login output %q: %v", out, err)
		}
	}
	return r, errOut, code
}

type loginResult struct {
	Auth struct {
		ClientToken   string            `json:"client_token"`
		Accessor      string            `json:"accessor"`
		Policies      []string          `json:"policies"`
		TokenPolicies []string          `json:"token_policies"`
		Metadata      map[string]string `json:"metadata"`
		LeaseDuration int               `json:"lease_duration"`
		Renewable     bool              `json:"renewable"`
		EntityID      string            `json:"entity_id"`
	} `json:"auth"`
}

// mustJSON2 is MustJSON for a command of two words (token lookup, auth
// list), whose -format flag comes after both.
func mustJSON2(t *testing.T, v *vaulttest.Server, out any, command, sub string, args ...string) {
	t.Helper()
	raw := v.MustRun(t, append([]string{command, sub, "-format=json"}, args...)...)
	if err := json.Unmarshal([]byte(raw), out); err != nil {
		t.Fatalf("%s %s: decoding %q: %v", command, sub, raw, err)
	}
}

// HashiCorp's JWT auth plugin, hosted by an auth mount of this plugin under
// each OCI runtime: logins make real tokens with the role's policy, bad
// JWTs make none, and a killed container is restarted for the next login
// and for renewals of earlier tokens.
func TestHostedJWTAuth(t *testing.T) { vaulttest.EachServer(t, testHostedJWTAuth) }

func testHostedJWTAuth(t *testing.T, k vaulttest.Kind) {
	docker := testimage.Docker(t)
	jwtID := testimage.BuildJWT(t, docker)
	idp, stranger := newSigner(t), newSigner(t)
	for _, e := range testimage.Engines(t) {
		if e.Podman {
			continue // the auth path is the engine-independent part; Docker's two runtimes show it
		}
		t.Run(e.Name, func(t *testing.T) {
			v := k.StartDev(t, "runtimes")
			v.EnableAuth(t, "runtimes")
			rt := e.OCIRuntime
			register := func(mount string) {
				v.MustRun(t, "write", mount+"/catalog/container/"+rt, "oci_runtime="+rt, "memory_bytes=134217728")
				v.MustRun(t, "write", mount+"/plugins/catalog/auth/jwt", "oci_image="+testimage.JWTName,
					"version="+testimage.JWTVersion, "sha256="+jwtID, "runtime="+rt)
			}
			register("auth/runtimes")
			// The two mounts' catalogs are their own.
			if _, errOut, code := v.Run(t, "read", "runtimes/plugins/catalog/auth/jwt"); code != 2 {
				t.Fatalf("the secrets mount sees the auth mount's registration (exit %d): %s", code, errOut)
			}
			// A secrets mount does not host an auth plugin: it says which mount does.
			register("runtimes")
			_, errOut, code := v.Run(t, "write", "runtimes/hosted/jwt", "plugin=jwt")
			if want := `plugin "jwt" is registered as auth, not secret: auth plugins are hosted by an auth mount of this plugin ` +
				`(vault plugin register -sha256=SHA256 auth vault-plugin-runtime-catalog, then vault auth enable -path=NAME vault-plugin-runtime-catalog)`; code != 2 || !strings.Contains(errOut, "Code: 400") || !strings.Contains(errOut, want) {
				t.Fatalf("hosting an auth plugin on a secrets mount: exit %d %s", code, errOut)
			}

			// Hosted: pending until Vault has read its login path as
			// unauthenticated.
			var hosted struct {
				Data     map[string]interface{} `json:"data"`
				Warnings []string               `json:"warnings"`
			}
			v.MustJSON(t, &hosted, "write", "auth/runtimes/hosted/jwt", "plugin=jwt")
			reload := "vault write sys/plugins/reload/backend mounts=auth/runtimes/"
			if hosted.Data["state"] != "pending_reload" || len(hosted.Warnings) != 1 || !strings.Contains(hosted.Warnings[0], reload) {
				t.Fatalf("hosting jwt: %+v", hosted)
			}
			// One hosted auth method per auth mount: every login through it
			// gets its accessor, on which Vault keys entity aliases.
			if _, errOut, code := v.Run(t, "write", "auth/runtimes/hosted/jwt2", "plugin=jwt"); code != 2 || !strings.Contains(errOut, "Code: 400") ||
				!strings.Contains(errOut, `this auth mount hosts "jwt" already, and an auth mount of this plugin hosts one auth method`) {
				t.Fatalf("a second hosted auth mount: exit %d %s", code, errOut)
			}
			sub := "alice-" + rt
			valid := idp.token(t, sub, "rc-test", time.Now().Add(time.Hour))
			login := func(jwt string) (loginResult, string, int) { return jwtLogin(t, v, jwt) }
			if _, errOut, code := login(valid); code != 2 || !strings.Contains(errOut, "permission denied") {
				t.Fatalf("a login before the reload: exit %d %s", code, errOut)
			}
			v.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=auth/runtimes/")

			dir := vaulttest.ShortTempDir(t)
			v.MustRun(t, "write", "auth/runtimes/mounts/jwt/config", "jwt_validation_pubkeys=@"+idp.publicPEM(t, dir))
			v.MustRun(t, "write", "auth/runtimes/mounts/jwt/role/dev", "role_type=jwt", "bound_audiences=rc-test",
				"user_claim=sub", "token_policies=reader", "token_ttl=1h", "token_max_ttl=2h")
			v.MustRun(t, "secrets", "enable", "-path=kv", "kv")
			v.MustRun(t, "write", "kv/allowed", "v=yes")
			v.MustRun(t, "write", "kv/denied", "v=no")
			if _, errOut, code := v.RunInput(t, v.Token, strings.NewReader(`path "kv/allowed" { capabilities = ["read"] }`), "policy", "write", "reader", "-"); code != 0 {
				t.Fatalf("policy write: %s", errOut)
			}

			// A valid JWT logs in: the token has the role's policy and reads
			// what it allows, nothing else.
			accessors := func() []string {
				var keys []string
				v.MustJSON(t, &keys, "list", "auth/token/accessors")
				slices.Sort(keys)
				return keys
			}
			before := accessors()
			first, errOut, code := login(valid)
			if code != 0 {
				t.Fatalf("login: exit %d %s", code, errOut)
			}
			a := first.Auth
			if !reflect.DeepEqual(a.TokenPolicies, []string{"default", "reader"}) || a.LeaseDuration != 3600 || !a.Renewable ||
				a.Metadata["role"] != "dev" || a.EntityID == "" || a.ClientToken == "" {
				t.Fatalf("login: %+v", a)
			}
			if _, errOut, code := v.RunAs(t, a.ClientToken, "read", "kv/allowed"); code != 0 {
				t.Fatalf("the token cannot read what its policy allows: %s", errOut)
			}
			if _, errOut, code := v.RunAs(t, a.ClientToken, "read", "kv/denied"); code != 2 || !strings.Contains(errOut, "permission denied") {
				t.Fatalf("the token reads what its policy does not allow: exit %d %s", code, errOut)
			}
			var lookup struct {
				Data struct {
					Path     string            `json:"path"`
					Meta     map[string]string `json:"meta"`
					EntityID string            `json:"entity_id"`
				} `json:"data"`
			}
			mustJSON2(t, v, &lookup, "token", "lookup", a.ClientToken)
			if lookup.Data.Path != "auth/runtimes/mounts/jwt/login" || lookup.Data.Meta["role"] != "dev" || lookup.Data.EntityID != a.EntityID {
				t.Fatalf("token lookup: %+v", lookup.Data)
			}
			// The entity alias is on this mount's accessor.
			var auths map[string]struct {
				Accessor string `json:"accessor"`
			}
			mustJSON2(t, v, &auths, "auth", "list")
			var entity struct {
				Data struct {
					Aliases []struct {
						Name          string `json:"name"`
						MountAccessor string `json:"mount_accessor"`
					} `json:"aliases"`
				} `json:"data"`
			}
			v.MustJSON(t, &entity, "read", "identity/entity/id/"+a.EntityID)
			if al := entity.Data.Aliases; len(al) != 1 || al[0].Name != sub || al[0].MountAccessor != auths["runtimes/"].Accessor {
				t.Fatalf("entity aliases %+v, want %s on %s", al, sub, auths["runtimes/"].Accessor)
			}

			// Expired, signed by another key, for another audience: refused,
			// and no token is made.
			during := accessors()
			for what, bad := range map[string]string{
				"expired":        idp.token(t, sub, "rc-test", time.Now().Add(-time.Minute)),
				"another key":    stranger.token(t, sub, "rc-test", time.Now().Add(time.Hour)),
				"another aud":    idp.token(t, sub, "someone-else", time.Now().Add(time.Hour)),
				"not even a JWT": "not.a.jwt",
			} {
				if r, errOut, code := login(bad); code != 2 || r.Auth.ClientToken != "" || !strings.Contains(errOut, "Code: 400") {
					t.Errorf("login with a JWT %s: exit %d %s", what, code, errOut)
				}
			}
			if after := accessors(); !reflect.DeepEqual(after, during) || len(during) != len(before)+1 {
				t.Fatalf("tokens: %d before the login, %d after it, %d after the refused ones", len(before), len(during), len(after))
			}

			// Run under the runtime's limit, with the health of a hosted
			// secrets engine.
			var st mountState
			v.MustJSON(t, &st, "read", "auth/runtimes/hosted/jwt")
			if st.Data.State != "running" || st.Data.OCIRuntime != rt {
				t.Fatalf("hosted jwt: %+v", st.Data)
			}
			if info, err := e.Client.ContainerInspect(t.Context(), st.Data.ContainerID); err != nil || info.HostConfig.Memory != 134217728 {
				t.Fatalf("the container: %v %+v", err, info.HostConfig)
			}
			checkFigures(t, sampledHealth(t, v, "auth/runtimes/hosted/jwt"), false, 134217728)

			// Killed: the next login restarts it, and an earlier token renews
			// through its renew check.
			if out, err := runDocker(e.DockerArgs("kill", st.Data.ContainerID)...); err != nil {
				t.Fatalf("docker kill: %v %s", err, out)
			}
			second, errOut, code := login(idp.token(t, sub, "rc-test", time.Now().Add(time.Hour)))
			if code != 0 || second.Auth.EntityID != a.EntityID {
				t.Fatalf("login after the kill: exit %d %s %+v", code, errOut, second.Auth)
			}
			var renewed loginResult
			mustJSON2(t, v, &renewed, "token", "renew", a.ClientToken)
			if renewed.Auth.ClientToken != a.ClientToken || renewed.Auth.LeaseDuration != 3600 {
				t.Fatalf("renew after the kill: %+v", renewed.Auth)
			}
			v.MustJSON(t, &st, "read", "auth/runtimes/hosted/jwt")
			if st.Data.Restarts != 1 {
				t.Fatalf("after the kill: %+v", st.Data)
			}
			// A reload restarts it; the mount's tune caps its tokens' TTLs,
			// as Vault caps any auth mount's.
			var reloaded struct {
				Data struct {
					Reloaded []string `json:"reloaded"`
				} `json:"data"`
			}
			v.MustJSON(t, &reloaded, "write", "auth/runtimes/plugins/reload", "mounts=jwt")
			if !reflect.DeepEqual(reloaded.Data.Reloaded, []string{"jwt"}) {
				t.Fatalf("reload: %+v", reloaded.Data)
			}
			v.MustRun(t, "auth", "tune", "-max-lease-ttl=30m", "runtimes/")
			if capped, errOut, code := login(idp.token(t, sub, "rc-test", time.Now().Add(time.Hour))); code != 0 || capped.Auth.LeaseDuration != 1800 {
				t.Fatalf("login under a 30m mount max: exit %d %s %+v", code, errOut, capped.Auth)
			}

			// The renew check is the plugin's: without the role it refuses.
			v.MustRun(t, "delete", "auth/runtimes/mounts/jwt/role/dev")
			if _, errOut, code := v.Run(t, "token", "renew", a.ClientToken); code != 2 || !strings.Contains(errOut, "role dev does not exist during renewal") {
				t.Fatalf("renew without the role: exit %d %s", code, errOut)
			}

			// Revoked, the token is gone.
			v.MustRun(t, "token", "revoke", a.ClientToken)
			if _, errOut, code := v.Run(t, "token", "lookup", a.ClientToken); code != 2 || !strings.Contains(errOut, "bad token") {
				t.Fatalf("lookup of a revoked token: exit %d %s", code, errOut)
			}
			// Deleted, the mount's tokens live on, as Vault never asks an
			// auth method to revoke one; a mount made again under the name,
			// with the same role, does not renew them; revoked by path, they
			// are gone.
			var deleted struct {
				Warnings []string `json:"warnings"`
			}
			v.MustJSON(t, &deleted, "delete", "auth/runtimes/hosted/jwt")
			if len(deleted.Warnings) != 1 || !strings.Contains(deleted.Warnings[0], "vault token revoke -mode=path auth/runtimes/mounts/jwt/") {
				t.Fatalf("deleting the hosted auth mount: %+v", deleted)
			}
			if _, errOut, code := v.Run(t, "token", "lookup", second.Auth.ClientToken); code != 0 {
				t.Fatalf("a token of the deleted mount, before its revocation: exit %d %s", code, errOut)
			}
			v.MustRun(t, "write", "auth/runtimes/hosted/jwt", "plugin=jwt")
			v.MustRun(t, "write", "auth/runtimes/mounts/jwt/config", "jwt_validation_pubkeys=@"+idp.publicPEM(t, dir))
			v.MustRun(t, "write", "auth/runtimes/mounts/jwt/role/dev", "role_type=jwt", "bound_audiences=rc-test",
				"user_claim=sub", "token_policies=reader", "token_ttl=1h", "token_max_ttl=2h")
			if _, errOut, code := v.Run(t, "token", "renew", second.Auth.ClientToken); code != 2 ||
				!strings.Contains(errOut, "this token was made by an earlier hosted mount named jwt, since deleted") {
				t.Fatalf("renewing a token of the deleted mount through the new one: exit %d %s", code, errOut)
			}
			v.MustRun(t, "token", "revoke", "-mode=path", "auth/runtimes/mounts/jwt/")
			if _, _, code := v.Run(t, "token", "lookup", second.Auth.ClientToken); code != 2 {
				t.Fatalf("a token of the deleted mount outlived its revocation by path")
			}
			v.MustRun(t, "delete", "auth/runtimes/hosted/jwt")
			v.Stop(t)
			testimage.AssertNoContainersOf(t, e.Client, v.ClusterID)
		})
	}
}
