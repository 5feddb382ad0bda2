package simulate

import (
	"embed"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// The shipped scenarios and the traces they replay are built in, so the command works from
// any directory.
//
//go:embed scenarios/*.yaml testdata/traces/*.csv
var shipped embed.FS

// DefaultScenario is the scenario `scaler simulate` runs when none is given.
const DefaultScenario = "swh-loaders"

// ShippedScenarios lists the names of the built-in scenarios.
func ShippedScenarios() []string {
	entries, _ := fs.ReadDir(shipped, "scenarios")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// LoadShipped loads a built-in scenario by name ("swh-loaders", or its file name); ok is
// false when there is none by that name.
func LoadShipped(name string) (sc *Scenario, ok bool, err error) {
	base := strings.TrimSuffix(path.Base(name), ".yaml")
	file := "scenarios/" + base + ".yaml"
	if _, err := fs.Stat(shipped, file); err != nil {
		return nil, false, nil
	}
	sc, err = LoadScenarioFS(shipped, file)
	return sc, true, err
}
