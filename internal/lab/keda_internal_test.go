package lab

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPatchKEDAAdapter(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    string
		wantErr string
	}{
		{
			name: "binds loopback",
			src:  "a\n\t" + kedaAdapterBind + "\nb\n",
			want: "a\n\t" + kedaAdapterBindLoopback + "\nb\n",
		},
		{name: "line moved away", src: "package main\n", wantErr: "found 0 occurrences"},
		{name: "line twice", src: kedaAdapterBind + "\n" + kedaAdapterBind, wantErr: "found 2 occurrences"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := patchKEDAAdapter([]byte(tc.src))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadGoMod(t *testing.T) {
	tests := []struct {
		name         string
		mod          string
		wantGo       string
		wantReplaces []string
	}{
		{
			name:         "single line, as in KEDA",
			mod:          "module x\n\ngo 1.26.0\n\nrequire a v1\n\nreplace a v1.0.0 => a v1.0.1 // pinned\n",
			wantGo:       "1.26.0",
			wantReplaces: []string{"a v1.0.0 => a v1.0.1"},
		},
		{
			name:         "block",
			mod:          "module x\ngo 1.25\nreplace (\n\tb => b v2.0.0\n\t// comment\n\tc v1 => ../c\n)\n",
			wantGo:       "1.25",
			wantReplaces: []string{"b => b v2.0.0", "c v1 => ../c"},
		},
		{name: "none", mod: "module x\ngo 1.24\n", wantGo: "1.24"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(p, []byte(tc.mod), 0o644); err != nil {
				t.Fatal(err)
			}
			gotGo, gotReplaces, err := readGoMod(p)
			if err != nil {
				t.Fatal(err)
			}
			if gotGo != tc.wantGo || !slices.Equal(gotReplaces, tc.wantReplaces) {
				t.Errorf("got go %q replaces %q, want %q %q", gotGo, gotReplaces, tc.wantGo, tc.wantReplaces)
			}
		})
	}
}
