package runtime

import (
	"reflect"
	"testing"
)

func TestDedupEnv(t *testing.T) {
	got := DedupEnv([]string{"A=1", "B=x=y", "A=2", "C", "C=", "B=z"})
	want := []string{"A=2", "C=", "B=z"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DedupEnv = %v, want %v", got, want)
	}
}

func TestLineTail(t *testing.T) {
	tail := newLineTail(2)
	tail.Write([]byte("one\ntw"))
	tail.Write([]byte("o\nthree\nfou"))
	if got := tail.String(); got != "two\nthree\nfou" {
		t.Fatalf("tail = %q", got)
	}
}
