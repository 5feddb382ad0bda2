package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A stack that fails to start returns the error and removes what it made, rather than
// panicking in its own clean-up: the failing step's error is what the operator needs to see.
func TestStartStackFailureCleansUp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("HEADROOM_KEEP_LAB", "") // a kept lab is what this test looks for
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // every component's start fails at once
	s, err := StartStack(ctx, StackOptions{ScalerBinary: filepath.Join(tmp, "no-such-scaler")})
	if err == nil {
		s.Stop()
		t.Fatal("StartStack on a cancelled context: no error")
	}
	if s != nil {
		t.Errorf("StartStack returned a stack with the error %v", err)
	}
	left, readErr := os.ReadDir(tmp)
	if readErr != nil {
		t.Fatal(readErr)
	}
	for _, e := range left {
		t.Errorf("left behind after the failed start: %s", e.Name())
	}
}

func TestStartStackRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts StackOptions
		want string
	}{
		{"negative replicas", StackOptions{ScalerReplicas: -1}, "scaler replicas -1 is negative"},
		{"negative refresh", StackOptions{Refresh: -1}, "refresh -1ns is negative"},
		{"environment without =", StackOptions{ScalerEnv: []string{"GOGC=400", "GOMAXPROCS"}}, `scaler environment "GOMAXPROCS" is not KEY=VALUE`},
		{"environment without a key", StackOptions{ScalerEnv: []string{"=1"}}, `scaler environment "=1" is not KEY=VALUE`},
		{"CPU list", StackOptions{ScalerCPUs: "one"}, `scaler CPUs "one" is not a CPU list`},
		{"CPU list with a trailing comma", StackOptions{ScalerCPUs: "0,"}, `scaler CPUs "0," is not a CPU list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := StartStack(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartStack(%+v) = %v, want an error with %q", tc.opts, err, tc.want)
			}
		})
	}
}

// The scaler's extra environment and CPU pinning reach the process itself, checked by the
// kernel's own view of it (/proc/self) in place of the scaler, and nothing of the parent's
// environment is lost.
func TestScalerCommandEnvAndCPUs(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset (util-linux) not installed")
	}
	t.Setenv("HEADROOM_PARENT_VALUE", "kept")
	script := `grep Cpus_allowed_list /proc/self/status; echo "GOGC=$GOGC parent=$HEADROOM_PARENT_VALUE"`
	for _, tc := range []struct {
		cpus, env string
		want      []string
	}{
		{"0", "GOGC=400", []string{"Cpus_allowed_list:\t0\n", "GOGC=400 parent=kept"}},
		{"", "", []string{"GOGC= parent=kept"}},
	} {
		sc := &Scaler{bin: "/bin/sh", args: []string{"-c", script}, cpus: tc.cpus}
		if tc.env != "" {
			sc.env = []string{tc.env}
		}
		out, err := sc.command().Output()
		if err != nil {
			t.Fatalf("cpus %q env %q: %v", tc.cpus, tc.env, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("cpus %q env %q: output %q lacks %q", tc.cpus, tc.env, out, w)
			}
		}
	}
}

// Races finds each report the race detector wrote into a scaler's log, whole, and nothing in
// a clean log.
func TestRacesFindsReports(t *testing.T) {
	dir := t.TempDir()
	report := func(addr string) string {
		return "==================\nWARNING: DATA RACE\nWrite at " + addr + " by goroutine 7:\n  main.f()\n      /src/f.go:10 +0x44\n\nPrevious read at " + addr + " by goroutine 6:\n  main.g()\n      /src/g.go:20 +0x3c\n==================\n"
	}
	logs := map[string]string{
		"clean.log": `{"level":"INFO","msg":"serving"}` + "\n" + `{"level":"INFO","msg":"stopped"}` + "\n",
		"racy.log":  `{"level":"INFO","msg":"serving"}` + "\n" + report("0x00c000012345") + `{"level":"INFO","msg":"planned"}` + "\n" + report("0x00c000054321") + "Found 2 data race(s)\n",
	}
	s := &Stack{}
	for name, body := range logs {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s.Scalers = append(s.Scalers, &Scaler{log: p})
	}
	races, err := s.Races()
	if err != nil {
		t.Fatal(err)
	}
	if len(races) != 2 {
		t.Fatalf("%d reports, want 2: %q", len(races), races)
	}
	for i, addr := range []string{"0x00c000012345", "0x00c000054321"} {
		r := races[i]
		if !strings.HasPrefix(r, filepath.Join(dir, "racy.log")+":") || !strings.Contains(r, "Write at "+addr) || !strings.Contains(r, "/src/g.go:20") || strings.Contains(r, "planned") {
			t.Errorf("report %d = %q, want the racy log's report at %s alone", i, r, addr)
		}
	}
	s.Scalers[1].log = filepath.Join(dir, "missing.log")
	if _, err := s.Races(); err == nil {
		t.Error("Races with a log that does not exist: no error")
	}
}
