package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRabbitMQConfigStats(t *testing.T) {
	for _, tc := range []struct {
		stats time.Duration
		want  []string // lines the config holds
		not   []string // and does not
	}{
		{stats: 500 * time.Millisecond, want: []string{"collect_statistics_interval = 500", "management.sample_retention_policies.basic.minute = 1"}},
		{stats: 0, not: []string{"collect_statistics_interval", "sample_retention_policies"}}, // the broker's defaults
	} {
		r := &RabbitMQ{dir: t.TempDir(), amqpPort: 1, mgmtPort: 2}
		if err := r.writeConfig(tc.stats); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(r.dir, "rabbitmq.conf"))
		if err != nil {
			t.Fatal(err)
		}
		conf := string(b)
		if !strings.Contains(conf, "listeners.tcp.default = 127.0.0.1:1") {
			t.Errorf("stats %v: no loopback listener in\n%s", tc.stats, conf)
		}
		for _, w := range tc.want {
			if !strings.Contains(conf, w) {
				t.Errorf("stats %v: config lacks %q:\n%s", tc.stats, w, conf)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(conf, n) {
				t.Errorf("stats %v: config sets %q:\n%s", tc.stats, n, conf)
			}
		}
	}
}

func TestStartRabbitMQBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts RabbitMQOptions
		want string
	}{
		{RabbitMQOptions{StatsInterval: -time.Second}, "negative stats interval -1s"},
		{RabbitMQOptions{StatsInterval: time.Second, StatsDefaults: true}, "stats interval 1s with the broker's default"},
	} {
		_, err := StartRabbitMQ(t.Context(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartRabbitMQ(%+v) = %v, want an error naming %q", tc.opts, err, tc.want)
		}
	}
}
