package dashcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// Versions of the npm packages TypeCheck installs: Grafana's generated TypeScript types for
// dashboards, and the compiler.
const (
	GrafanaSchemaVersion = "13.2.3"
	TypeScriptVersion    = "7.0.2"
)

// plainTS is a TypeScript type that turns the schema's string enums into the unions of their
// values: a JSON file can only spell "value", never MappingType.ValueToText.
const plainTS = "type Plain<T> = T extends string ? `${T}` : T extends readonly (infer E)[] ? Plain<E>[] : " +
	"T extends object ? { [K in keyof T]: Plain<T[K]> } : T;\n"

// schemaDir installs @grafana/schema and typescript with npm into the cache directory once
// and returns it. A missing npm or a failed install wraps lab.ErrUnavailable.
func schemaDir(ctx context.Context) (string, error) {
	dir := filepath.Join(lab.CacheDir(), "npm", "grafana-schema-"+GrafanaSchemaVersion+"-ts-"+TypeScriptVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "tsc")); err == nil {
		return dir, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("npm not on PATH (install the Debian packages nodejs and npm): %w", lab.ErrUnavailable)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), []byte(`{"name":"dashcheck","private":true}`), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
		"@grafana/schema@"+GrafanaSchemaVersion, "typescript@"+TypeScriptVersion)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install @grafana/schema@%s typescript@%s: %v\n%s: %w", GrafanaSchemaVersion, TypeScriptVersion, err, out, lab.ErrUnavailable)
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(dir); statErr != nil { // not another process winning the race
			return "", err
		}
	}
	return dir, nil
}

// TypeCheck compiles the dashboard JSON as a value of @grafana/schema's Dashboard type with
// tsc --strict: wrong value types, missing required fields and unknown fields are errors. It
// needs no Grafana, only node and npm.
func TypeCheck(ctx context.Context, dashboard []byte) error {
	dir, err := schemaDir(ctx)
	if err != nil {
		return err
	}
	src, err := os.MkdirTemp(dir, "check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	ts := `import type { Dashboard } from "@grafana/schema";` + "\n" + plainTS +
		"export const dashboard: Plain<Dashboard> = " + string(dashboard) + ";\n"
	file := filepath.Join(src, "dashboard.ts")
	if err := os.WriteFile(file, []byte(ts), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", ".bin", "tsc"), "--noEmit", "--strict",
		"--skipLibCheck", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler", file)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dashboard does not type-check against @grafana/schema %s: %v\n%s", GrafanaSchemaVersion, err,
			strings.ReplaceAll(string(out), file, "dashboard.ts"))
	}
	return nil
}
