package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headroom-autoscaler/headroom/internal/kubeyaml"
)

// A ScaledObject as the examples write it: every check passes.
const goodScaledObject = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: good
  namespace: jobs
spec:
  scaleTargetRef: {name: good}
  maxReplicaCount: 20
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          tolerance: "0"
          policies: [{type: Pods, value: 20, periodSeconds: 15}]
        scaleDown:
          stabilizationWindowSeconds: 0
          tolerance: 0
          selectPolicy: Max
          policies: [{type: Percent, value: 100, periodSeconds: 15}, {type: Pods, value: 25, periodSeconds: 15}]
  triggers:
  - type: external-push
    metadata: {scalerAddress: "headroom.headroom.svc:9090", broker: main, queue: jobs, stepPods: "4"}
`

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		args     []string
		// want lists the findings, each as "severity: field" (and the message contains
		// the words after " ~ ", when given); wantErr the error run returns, "" for none.
		want    []string
		wantErr string
	}{
		{name: "good", manifest: goodScaledObject, args: []string{"--broker", "main=http://rabbit:15672"}},
		{name: "good as JSON in a List", manifest: `{"apiVersion": "v1", "kind": "List", "items": [` + yamlToJSON(t, goodScaledObject) + `]}`},
		{
			name:     "bad metadata names the key and value",
			manifest: strings.Replace(goodScaledObject, `stepPods: "4"`, `stepPods: "lots"`, 1),
			want:     []string{`error: spec.triggers[0].metadata.stepPods ~ stepPods="lots"`},
			wantErr:  "1 errors",
		},
		{
			name:     "unknown broker",
			manifest: goodScaledObject, args: []string{"--broker", "other"},
			want:    []string{`error: spec.triggers[0].metadata.broker ~ "main"`},
			wantErr: "1 errors",
		},
		{
			name:     "metricType Value",
			manifest: strings.Replace(goodScaledObject, "  - type: external-push\n", "  - type: external-push\n    metricType: Value\n", 1),
			want:     []string{`error: spec.triggers[0].metricType ~ "Value"`},
			wantErr:  "1 errors",
		},
		{
			name:     "polled trigger and a cpu trigger beside it",
			manifest: strings.Replace(goodScaledObject, "type: external-push", "type: external", 1) + "  - type: cpu\n    metricType: Utilization\n    metadata: {value: \"80\"}\n",
			want:     []string{"warning: spec.triggers[0].type ~ pollingInterval", "warning: spec.triggers[1] ~ largest count"},
		},
		{
			name:     "no behavior",
			manifest: cut(t, goodScaledObject, "  advanced:", "  triggers:"),
			want:     []string{"warning: spec.advanced.horizontalPodAutoscalerConfig.behavior ~ 300 s"},
		},
		{
			name: "windows, tolerance and policies that hold the count back",
			manifest: strings.NewReplacer(
				"stabilizationWindowSeconds: 0\n          tolerance: \"0\"", "stabilizationWindowSeconds: 60",
				"{type: Pods, value: 25, periodSeconds: 15}", "{type: Pods, value: 5, periodSeconds: 15}",
				"tolerance: 0\n", "tolerance: \"0.1\"\n",
			).Replace(goodScaledObject),
			args: []string{"--strict"},
			want: []string{
				"warning: spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilizationWindowSeconds ~ lowest answer of the last 60 s",
				"warning: spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.tolerance ~ 10%",
				"warning: spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.tolerance ~ 0.1",
				"warning: spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies ~ 5 pods",
			},
			wantErr: "4 warnings",
		},
		{
			name:     "scale-down left to the HPA's defaults",
			manifest: cut(t, goodScaledObject, "        scaleDown:", "  triggers:"),
			want:     []string{"warning: spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown ~ 300 s"},
		},
		{
			name:     "another scaler's ScaledObject is not checked",
			manifest: strings.Replace(goodScaledObject, `stepPods: "4"`, `stepPods: "lots"`, 1),
			args:     []string{"--scaler-address", "elsewhere:9090"},
		},
		{
			name:     "behavior the HPA cannot read",
			manifest: strings.Replace(goodScaledObject, "policies: [{type: Pods, value: 20, periodSeconds: 15}]", "policies: lots", 1),
			want:     []string{"error: spec.advanced.horizontalPodAutoscalerConfig.behavior ~ unreadable"},
			wantErr:  "1 errors",
		},
		{name: "not YAML", manifest: "kind: [", wantErr: "document 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "so.yaml")
			if err := os.WriteFile(path, []byte(tc.manifest), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), append(append([]string{"check"}, tc.args...), path), &stdout, &stderr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("check: %v\n%s", err, stdout.String())
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("check: error %v, want one containing %q\n%s", err, tc.wantErr, stdout.String())
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				if strings.HasPrefix(l, path+": ScaledObject jobs/good: ") {
					got = append(got, strings.TrimPrefix(l, path+": ScaledObject jobs/good: "))
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("findings:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				head, words, _ := strings.Cut(w, " ~ ")
				if !strings.HasPrefix(got[i], head+": ") || !strings.Contains(got[i], words) {
					t.Errorf("finding %d = %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

// A directory is read for its manifest files; a file that is no manifest of ours is skipped,
// and a bad argument is a usage error that names it.
func TestCheckArguments(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"a/so.yaml":          goodScaledObject,
		"b/deployment.yml":   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\n---\n",
		"b/notes.txt":        "not a manifest",
		"b/rabbitmq-so.json": `{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "r"}, "spec": {"triggers": [{"type": "rabbitmq", "metadata": {"queueName": "q"}}]}}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"check", dir}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("check %s: %v\n%s", dir, err, stdout.String())
	}
	if want := "ScaledObjects: 2, pointing at headroom: 1 (triggers: 1); errors: 0, warnings: 0\n"; stdout.String() != want {
		t.Errorf("output %q, want %q", stdout.String(), want)
	}

	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{name: "no file", args: []string{"check"}, usage: true, want: "no manifest"},
		{name: "missing file", args: []string{"check", filepath.Join(dir, "nope.yaml")}, want: "nope.yaml"},
		{name: "empty directory", args: []string{"check", t.TempDir()}, want: "no *.yaml"},
		{name: "broker without a name", args: []string{"check", "--broker", "=http://x", dir}, usage: true, want: `"=http://x"`},
		{name: "unknown flag", args: []string{"check", "--brokers", "main", dir}, usage: true, want: "brokers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, errUsage) != tc.usage {
				t.Errorf("error %v, want one naming %s (usage error: %v)", err, tc.want, tc.usage)
			}
		})
	}
}

// cut removes the lines of s from the one starting with from up to (not including) the one
// starting with to.
func cut(t *testing.T, s, from, to string) string {
	t.Helper()
	i, j := strings.Index(s, "\n"+from), strings.Index(s, "\n"+to)
	if i < 0 || j < i {
		t.Fatalf("cut %q..%q: not found", from, to)
	}
	return s[:i] + s[j:]
}

// yamlToJSON converts one YAML document the way the check reads it.
func yamlToJSON(t *testing.T, s string) string {
	t.Helper()
	objs, err := kubeyaml.Decode([]byte(s))
	if err != nil || len(objs) != 1 {
		t.Fatalf("decode: %v (%d objects)", err, len(objs))
	}
	b, err := objs[0].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
