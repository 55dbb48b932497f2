package docker

import (
	"os"
	"strconv"
	"testing"

	acl "github.com/joshlf/go-acl"
)

// The rootless socket directory gets a default ACL giving this process's
// user read-write on the sockets go-plugin creates in it.
func TestSetRootlessACL(t *testing.T) {
	dir := t.TempDir()
	if err := setRootlessACL(dir); err != nil {
		t.Fatal(err)
	}
	got, err := acl.GetDefault(dir)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		tag       acl.Tag
		qualifier string
		perms     os.FileMode
	}
	want := map[entry]bool{
		{acl.TagUserObj, "", 0o6}: true, {acl.TagGroupObj, "", 0o6}: true, {acl.TagOther, "", 0}: true,
		{acl.TagUser, strconv.Itoa(os.Geteuid()), 0o6}: true, {acl.TagMask, "", 0o6}: true,
	}
	for _, e := range got {
		key := entry{e.Tag, e.Qualifier, e.Perms}
		if !want[key] {
			t.Errorf("unexpected default ACL entry %s", e)
		}
		delete(want, key)
	}
	for e := range want {
		t.Errorf("default ACL lacks %+v", e)
	}
}
