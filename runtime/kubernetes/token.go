package kubernetes

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"
)

// kubeconfigToken is the bearer token of a kubeconfig's user, read again
// whenever the file changes: a token written into a kubeconfig (kubectl
// create token) expires, and an operator rotates it by writing the file
// anew, which the next request to the cluster then uses, without a reload
// of this plugin. Only the token is read again; a new server or CA needs a
// reload.
type kubeconfigToken struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   string
}

// withFreshToken makes config take its bearer token from the kubeconfig at
// path on each request, when it has a token of its own (a tokenFile is read
// again by client-go itself; other credentials are left as they are).
func withFreshToken(config *rest.Config, path string) {
	if config.BearerToken == "" || config.BearerTokenFile != "" {
		return
	}
	t := &kubeconfigToken{path: path, token: config.BearerToken}
	if fi, err := os.Stat(path); err == nil {
		t.modTime, t.size = fi.ModTime(), fi.Size()
	}
	config.BearerToken = ""
	config.Wrap(transport.TokenSourceWrapTransport(t))
}

// Token is the kubeconfig's token as the file now has it; the last one
// read while the file cannot be read or has none (a rewrite under way).
func (t *kubeconfigToken) Token() (*oauth2.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if fi, err := os.Stat(t.path); err == nil && (!fi.ModTime().Equal(t.modTime) || fi.Size() != t.size) {
		if token, err := readToken(t.path); err == nil && token != "" {
			t.token, t.modTime, t.size = token, fi.ModTime(), fi.Size()
		}
	}
	if t.token == "" {
		return nil, fmt.Errorf("the kubeconfig %s has no token", t.path)
	}
	return &oauth2.Token{AccessToken: t.token, TokenType: "Bearer"}, nil
}

// readToken is the bearer token of the kubeconfig's current context's user.
func readToken(path string) (string, error) {
	config, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return "", err
	}
	return config.BearerToken, nil
}
