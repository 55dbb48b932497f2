package kubernetes

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A kubeconfig whose token is rewritten (rotated, as kubectl create token
// in a cron would) is used with its new token from the next request on,
// without a new engine; a kubeconfig being rewritten (empty for a moment)
// keeps the last token.
func TestKubeconfigTokenIsReadAgain(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	// TLS: client-go sends a kubeconfig's credentials to no plain-HTTP
	// server.
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}`)
	}))
	defer api.Close()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	write := func(token string) {
		t.Helper()
		config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, api.URL, token)
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-token")
	e, err := New("kubernetes://plugins" + path)
	if err != nil {
		t.Fatal(err)
	}
	list := func() {
		t.Helper()
		if _, err := e.client.CoreV1().Pods("plugins").List(context.Background(), metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list()
	write("the-rotated-token")
	list()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	list()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer first-token", "Bearer the-rotated-token", "Bearer the-rotated-token"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("the API server saw %q, want %q", seen, want)
	}
}
