package vaulttest

import "testing"

// A script for Vault said for OpenBao changes the command and its
// variables only; for Vault it stays as it is.
func TestSays(t *testing.T) {
	script := "export VAULT_ADDR=http://127.0.0.1:8200\nvault write runtimes/x a=b && vault read runtimes/x\n" +
		"sum=$(vault read -field=x y) cp bin/vault-plugin-runtime-catalog /etc/vault/plugins/\n  vault list runtimes/catalog"
	want := "export BAO_ADDR=http://127.0.0.1:8200\nbao write runtimes/x a=b && bao read runtimes/x\n" +
		"sum=$(bao read -field=x y) cp bin/vault-plugin-runtime-catalog /etc/vault/plugins/\n  bao list runtimes/catalog"
	if got := OpenBao.Says(script); got != want {
		t.Errorf("on OpenBao:\n%s\nwant:\n%s", got, want)
	}
	if got := Vault.Says(script); got != script {
		t.Errorf("on Vault:\n%s", got)
	}
}
