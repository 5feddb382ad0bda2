package manifests

import "testing"

// BenchmarkRender measures one kustomize build of the largest tree (overlays/tls: base,
// monitoring, dashboard ConfigMap, NetworkPolicy component and patches) from the embedded
// files.
func BenchmarkRender(b *testing.B) {
	for b.Loop() {
		if _, _, err := Render("overlays/tls"); err != nil {
			b.Fatal(err)
		}
	}
}
