package kubeyaml_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/headroom-autoscaler/headroom/internal/kubeyaml"
)

func TestDecode(t *testing.T) {
	stream := `apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec: {replicas: 3}
---
# only a comment
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"ratio": "0.5"}},
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"}, "spec": {"ports": [{"port": 80}]}}
]}
`
	objs, err := kubeyaml.Decode([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	if got, want := strings.Join(names, " "), "Deployment/a ConfigMap/b Service/c"; got != want {
		t.Fatalf("objects %q, want %q (the empty document skipped, the List's items apart)", got, want)
	}
	if n, ok, err := unstructured.NestedInt64(objs[0].Object, "spec", "replicas"); !ok || err != nil || n != 3 {
		t.Errorf("spec.replicas = %v, %v, %v; want the int64 3", n, ok, err)
	}
	ports, _, _ := unstructured.NestedSlice(objs[2].Object, "spec", "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["port"] != int64(80) {
		t.Errorf("a List item's port = %#v, want the int64 80", ports)
	}

	for _, tc := range []struct{ name, stream, want string }{
		{name: "bad YAML", stream: "kind: [", want: "document 1"},
		{name: "bad second document", stream: "kind: A\n---\nkind: [\n", want: "document 2"},
		{name: "not an object", stream: "kind: A\n---\n- a list\n", want: "document 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := kubeyaml.Decode([]byte(tc.stream)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
