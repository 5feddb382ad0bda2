package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/server"
)

// The decisions page shows, for every trigger, what KEDA gets and why: the same answers as
// GetMetrics, the shared room behind them, and the error of a trigger without a decision.
func TestDecisionsPage(t *testing.T) {
	e := newEnv(t, envOptions{})
	qa, qb := e.queue(t, "a"), e.queue(t, "b")
	for _, q := range []string{qa, qb} {
		if err := e.broker.Admin().Publish(t.Context(), "/", q, 20); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	// 2 + 2 running and 4 free slots, weights 3:1: a takes all 4 and b none (as in
	// TestShareSplitsRoom).
	mda := map[string]string{"queue": qa, "stepPods": "100", "weight": "3"}
	mdb := map[string]string{"queue": qb, "stepPods": "100", "weight": "1"}
	bad := map[string]string{"queue": qa, "stepPods": "lots"}
	missing := map[string]string{"queue": "no-such-queue-" + qa}
	e.cluster.add("dec", "a", server.Workload{Current: 2, Ready: 2, Fit: 4}, mda)
	e.cluster.add("dec", "b", server.Workload{Current: 2, Ready: 2, Fit: 4}, mdb)
	e.cluster.add("dec", "bad", server.Workload{Current: 1, Ready: 1, Fit: 4}, bad)
	e.cluster.add("other", "missing", server.Workload{Current: 1, Ready: 1, Fit: 4}, missing)
	if v, err := e.metricBecomes(t, ref("dec", "a", mda), 6, 10*time.Second); err != nil || v != 6 {
		t.Fatalf("a = %v (%v), want 6", v, err)
	}
	if v, err := e.metricBecomes(t, ref("dec", "b", mdb), 2, 10*time.Second); err != nil || v != 2 {
		t.Fatalf("b = %v (%v), want 2", v, err)
	}
	web := httptest.NewServer(e.srv.DecisionsHandler())
	t.Cleanup(web.Close)

	t.Run("json", func(t *testing.T) {
		code, body := get(t, web.URL+"/decisions?format=json", "")
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		var d server.Decisions
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("decode: %v\n%s", err, body)
		}
		if d.Error != "" || d.At.IsZero() || d.AgeSeconds < 0 {
			t.Errorf("pass: at %v, age %v, error %q; want a pass and no error", d.At, d.AgeSeconds, d.Error)
		}
		byName := map[string]server.TriggerAnswer{}
		var order []string
		for _, a := range d.Decisions {
			byName[a.Namespace+"/"+a.ScaledObject] = a
			order = append(order, a.Namespace+"/"+a.ScaledObject)
		}
		if want := "dec/a dec/b dec/bad other/missing"; strings.Join(order, " ") != want {
			t.Fatalf("triggers %q, want %q", order, want)
		}
		a, b := byName["dec/a"], byName["dec/b"]
		for _, tc := range []struct {
			name                       string
			got                        server.TriggerAnswer
			replicas, share, need, fit int32
			limit, queue, target, why  string
		}{
			{name: "a", got: a, replicas: 6, share: 4, need: 20, fit: 4, limit: "capacity", queue: qa, target: "Deployment/a",
				why: "20 messages need 20, but only 4 more fit: 2 → 6"},
			{name: "b", got: b, replicas: 2, share: 0, need: 20, fit: 4, limit: "capacity", queue: qb, target: "Deployment/b",
				why: "20 messages need 20, but only 0 more fit: 2 → 2 (4 fit in the cluster; the rest is the share of other ScaledObjects that want more)"},
		} {
			g := tc.got
			if g.Replicas != tc.replicas || g.Share != tc.share || g.Need != tc.need || g.Fit != tc.fit || g.Limit != tc.limit {
				t.Errorf("%s: replicas %d share %d need %d fit %d limit %q; want %d %d %d %d %q",
					tc.name, g.Replicas, g.Share, g.Need, g.Fit, g.Limit, tc.replicas, tc.share, tc.need, tc.fit, tc.limit)
			}
			if g.Explain != tc.why || g.Error != "" {
				t.Errorf("%s: explain %q error %q; want %q and no error", tc.name, g.Explain, g.Error, tc.why)
			}
			if !strings.Contains(g.Queue, `"`+tc.queue+`"`) || !strings.HasPrefix(g.Queue, "main ") || g.Target != tc.target {
				t.Errorf("%s: queue %q target %q; want broker main, queue %q, target %q", tc.name, g.Queue, g.Target, tc.queue, tc.target)
			}
			if g.MessagesReady != 20 || g.Current != 2 || g.Ready != 2 || g.SnapshotAgeSeconds <= 0 {
				t.Errorf("%s: messages %d current %d ready %d read %vs ago; want 20, 2, 2 and a reading",
					tc.name, g.MessagesReady, g.Current, g.Ready, g.SnapshotAgeSeconds)
			}
		}
		if g := byName["dec/bad"]; g.Limit != "error" || !strings.Contains(g.Error, `stepPods="lots"`) || g.Queue != "" {
			t.Errorf("bad metadata: limit %q error %q queue %q; want error naming stepPods=\"lots\"", g.Limit, g.Error, g.Queue)
		}
		if g := byName["other/missing"]; g.Limit != "error" || !strings.Contains(g.Error, "does not exist") || g.Current != 1 {
			t.Errorf("missing queue: limit %q error %q current %d; want an error saying the queue does not exist, and the target read", g.Limit, g.Error, g.Current)
		}
	})

	t.Run("json by Accept", func(t *testing.T) {
		code, body := get(t, web.URL+"/decisions?namespace=other", "application/json")
		var d server.Decisions
		if err := json.Unmarshal([]byte(body), &d); code != http.StatusOK || err != nil {
			t.Fatalf("status %d, decode %v: %s", code, err, body)
		}
		if len(d.Decisions) != 1 || d.Decisions[0].ScaledObject != "missing" {
			t.Errorf("namespace=other: %+v, want other/missing alone", d.Decisions)
		}
	})

	t.Run("text", func(t *testing.T) {
		code, body := get(t, web.URL+"/decisions?scaledobject=a", "")
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		lines := strings.Split(body, "\n")
		if !strings.HasPrefix(lines[0], "pass at ") || !strings.Contains(lines[0], "1 triggers") {
			t.Errorf("first line %q, want the pass and 1 trigger", lines[0])
		}
		var header, row string
		for _, l := range lines {
			switch {
			case strings.HasPrefix(l, "NAMESPACE"):
				header = l
			case strings.HasPrefix(l, "dec "):
				row = l
			}
		}
		if got := strings.Fields(header); strings.Join(got, " ") != "NAMESPACE SCALEDOBJECT TARGET QUEUE ANSWER LIMIT NEED CURRENT READY PENDING FIT SHARE BUSY MESSAGES READ WHY" {
			t.Errorf("header %q", header)
		}
		for _, want := range []string{"Deployment/a", qa, " 6 ", "capacity", "20+0", "- ", "20 messages need 20, but only 4 more fit: 2 → 6"} {
			if !strings.Contains(row, want) {
				t.Errorf("row %q does not contain %q", row, want)
			}
		}
		_, all := get(t, web.URL+"/decisions", "")
		if !strings.Contains(all, `trigger metadata stepPods="lots"`) {
			t.Errorf("the page does not show the bad trigger's error:\n%s", all)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct {
			name, url string
			code      int
			contains  string
		}{
			{name: "format", url: "/decisions?format=xml", code: http.StatusBadRequest, contains: `"xml"`},
			{name: "parameter", url: "/decisions?ns=dec", code: http.StatusBadRequest, contains: `"ns"`},
		} {
			code, body := get(t, web.URL+tc.url, "")
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Errorf("%s: status %d body %q; want %d naming %s", tc.name, code, body, tc.code, tc.contains)
			}
		}
		resp, err := http.Post(web.URL+"/decisions", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
			t.Errorf("POST: status %d, Allow %q; want 405 with Allow", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}

func get(t *testing.T, url, accept string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
