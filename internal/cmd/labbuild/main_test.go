package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestPrintNeedsKnownNames(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-print"}, &out); err == nil || !strings.Contains(err.Error(), "-print") {
		t.Errorf("-print without names: err = %v, want one naming -print", err)
	}
	err := run(context.Background(), []string{"-print", "no-such-binary"}, &out)
	if err == nil || !strings.Contains(err.Error(), "no-such-binary") {
		t.Errorf("-print no-such-binary: err = %v, want one naming the binary", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q for binaries that do not exist", out.String())
	}
}

func TestListNamesEveryRecipe(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-list"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-apiserver", "etcd", "kwok", "ghz", "keda-operator"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("-list does not name %s:\n%s", name, out.String())
		}
	}
}
