package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOwnerAliveOnlyForTheSameProcess(t *testing.T) {
	me := Owner()
	if !ownerAlive(me) {
		t.Fatalf("this process (%s) is not alive", me)
	}
	pid, _, _ := strings.Cut(me, ":")
	for _, owner := range []string{pid + ":1", pid + ":", "", "x:1", "999999999:1"} {
		if ownerAlive(owner) {
			t.Errorf("owner %q is alive", owner)
		}
	}
}

func TestReapSocketRootsRemovesOnlyDeadOwners(t *testing.T) {
	mine := OwnSocketRoot()
	dead := filepath.Join(os.TempDir(), socketRootPrefix+"999999999-1")
	other := filepath.Join(os.TempDir(), socketRootPrefix+"notapid-1")
	for _, d := range []string{dead, other} {
		if err := os.MkdirAll(filepath.Join(d, "plugin-dir1"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	defer os.RemoveAll(other)
	ReapSocketRoots()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead owner's root is still there: %v", err)
	}
	for _, kept := range []string{mine, other} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
}
