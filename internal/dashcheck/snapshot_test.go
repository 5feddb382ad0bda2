package dashcheck

import (
	"bytes"
	"image/png"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// TestSnapshotFromRealPrometheus scrapes a small exporter with a real Prometheus, then
// queries it as the dashboard would and draws the result.
func TestSnapshotFromRealPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "demo_replicas", Help: "Demo."}, []string{"scaledobject"})
	reg.MustRegister(g)
	g.WithLabelValues("worker").Set(3)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	prom := labtest.Prometheus(t, lab.PrometheusOptions{Targets: []string{strings.TrimPrefix(srv.URL, "http://")}})
	start := time.Now()
	if err := prom.WaitScraped(t.Context(), 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, prom.Tail(2000))
	}
	g.WithLabelValues("worker").Set(5)
	time.Sleep(2 * time.Second) // two more scrapes at the 1 s interval

	c := Client{URL: prom.URL}
	got, err := c.Instant(t.Context(), `demo_replicas{scaledobject=~".*"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Labels["scaledobject"] != "worker" || got[0].Points[0].V != 5 {
		t.Errorf("Instant = %+v, want one series scaledobject=worker with value 5", got)
	}
	if _, err := c.Instant(t.Context(), `sum(`); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Errorf("Instant of a bad expression: %v, want a bad_data error", err)
	}

	d, err := LoadDashboard([]byte(`{"uid":"x","templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]},
		"panels":[{"id":1,"type":"timeseries","title":"Replicas","gridPos":{"h":8,"w":12},
		"targets":[{"refId":"A","expr":"demo_replicas{scaledobject=~\"$scaledobject\"}","legendFormat":"{{scaledobject}}","datasource":{"uid":"${datasource}"}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	img, data, err := Snapshot(t.Context(), c, d, SnapshotOptions{Start: start, End: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 || len(data[0].Series) != 1 || len(data[0].Series[0]) != 1 || len(data[0].Series[0][0].Points) < 2 {
		t.Errorf("snapshot data = %+v, want one series with several points", data)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil || cfg.Width < 200 || cfg.Height < 100 {
		t.Errorf("snapshot is not a sizeable PNG: %+v, %v", cfg, err)
	}
}

func TestLegend(t *testing.T) {
	tests := []struct {
		name, format string
		labels       map[string]string
		want         string
	}{
		{name: "template", format: "{{scaledobject}} {{ state }}", labels: map[string]string{"scaledobject": "w", "state": "ready"}, want: "w ready"},
		{name: "missing label", format: "{{node}}", labels: map[string]string{}, want: ""},
		{name: "no format", format: "", labels: map[string]string{"b": "2", "a": "1"}, want: "a=1 b=2 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := legend(tc.format, tc.labels); got != tc.want {
				t.Errorf("legend(%q) = %q, want %q", tc.format, got, tc.want)
			}
		})
	}
}
