package manifests

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Files is the manifests tree.
//
//go:embed base components prometheus grafana overlays examples examples-tls
var Files embed.FS

// Dirs lists every kustomization a user applies on its own, in the order they would be
// applied to a fresh cluster (the scaler before the workloads that point at it).
var Dirs = []string{
	"base",
	"prometheus",
	"grafana",
	"overlays/production",
	"overlays/tls",
	"examples",
	"examples-tls",
}

// Object is one rendered Kubernetes object.
type Object map[string]any

// Kind is the object's kind.
func (o Object) Kind() string { s, _ := o["kind"].(string); return s }

// Name is metadata.name.
func (o Object) Name() string { s, _ := o.meta()["name"].(string); return s }

// Namespace is metadata.namespace, "" for cluster-scoped objects.
func (o Object) Namespace() string { s, _ := o.meta()["namespace"].(string); return s }

func (o Object) meta() map[string]any { m, _ := o["metadata"].(map[string]any); return m }

// Render builds the kustomization in dir (a path inside Files, such as "overlays/tls") and
// returns its objects in kustomize's output order, and the same as one YAML stream.
func Render(dir string) ([]Object, []byte, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := Files.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/", p), data)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("render %s: copy files: %w", dir, err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(mem, path.Join("/", dir))
	if err != nil {
		return nil, nil, fmt.Errorf("render %s: %w", dir, err)
	}
	stream, err := res.AsYaml()
	if err != nil {
		return nil, nil, fmt.Errorf("render %s: %w", dir, err)
	}
	objs := make([]Object, 0, res.Size())
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, nil, fmt.Errorf("render %s: %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, Object(m))
	}
	return objs, stream, nil
}
