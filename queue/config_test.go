package queue_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/queue"
)

func TestBrokerConfigValidate(t *testing.T) {
	tests := []struct {
		name     string
		cfg      queue.BrokerConfig
		wantErr  string // substring; "" means valid
		wantMode queue.Mode
	}{
		{name: "management", cfg: queue.BrokerConfig{Name: "main", URL: "http://rabbit:15672"}, wantMode: queue.ModeManagement},
		{name: "management with path prefix", cfg: queue.BrokerConfig{Name: "main", URL: "https://lb.example/rabbitmq/"}, wantMode: queue.ModeManagement},
		{name: "amqp", cfg: queue.BrokerConfig{Name: "main-2", URL: "amqp://u:p@rabbit:5672/"}, wantMode: queue.ModeAMQP},
		{name: "amqps with client cert", cfg: queue.BrokerConfig{Name: "m", URL: "amqps://rabbit", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "rabbit.internal"}, wantMode: queue.ModeAMQP},
		{name: "empty name", cfg: queue.BrokerConfig{URL: "http://r"}, wantErr: `broker name ""`},
		{name: "upper-case name", cfg: queue.BrokerConfig{Name: "Main", URL: "http://r"}, wantErr: `broker name "Main"`},
		{name: "empty url", cfg: queue.BrokerConfig{Name: "m"}, wantErr: "url is empty"},
		{name: "bad scheme", cfg: queue.BrokerConfig{Name: "m", URL: "ftp://r"}, wantErr: `scheme "ftp"`},
		{name: "no host", cfg: queue.BrokerConfig{Name: "m", URL: "http://"}, wantErr: "has no host"},
		{name: "query", cfg: queue.BrokerConfig{Name: "m", URL: "http://r/?x=1"}, wantErr: "query"},
		{name: "amqp vhost in url", cfg: queue.BrokerConfig{Name: "m", URL: "amqp://r/prod"}, wantErr: `names vhost "prod"`},
		{name: "ca on plain http", cfg: queue.BrokerConfig{Name: "m", URL: "http://r", CAFile: "ca.pem"}, wantErr: `caFile "ca.pem"`},
		{name: "cert without key", cfg: queue.BrokerConfig{Name: "m", URL: "https://r", CertFile: "c.pem"}, wantErr: "give both or neither"},
		{name: "unparseable url hides password", cfg: queue.BrokerConfig{Name: "m", URL: "http://u:hunter2@r:port/"}, wantErr: "does not parse"},
		{name: "metrics url", cfg: queue.BrokerConfig{Name: "m", URL: "http://r:15672", MetricsURLs: []string{"http://r:15692"}}, wantMode: queue.ModeManagement},
		{name: "metrics url over tls with a ca", cfg: queue.BrokerConfig{Name: "m", URL: "http://r:15672", MetricsURLs: []string{"https://r:15691/"}, CAFile: "ca.pem"}, wantMode: queue.ModeManagement},
		{name: "metrics url on an amqp broker", cfg: queue.BrokerConfig{Name: "m", URL: "amqp://r", MetricsURLs: []string{"http://r:15692"}}, wantErr: "metrics url http://r:15692 set but url amqp://r is not the management API"},
		{name: "metrics url scheme", cfg: queue.BrokerConfig{Name: "m", URL: "http://r", MetricsURLs: []string{"tcp://r:15692"}}, wantErr: `metrics url tcp://r:15692: scheme "tcp"`},
		{name: "metrics url without host", cfg: queue.BrokerConfig{Name: "m", URL: "http://r", MetricsURLs: []string{"http:///x"}}, wantErr: "metrics url http:///x has no host"},
		{name: "metrics url with the endpoint path", cfg: queue.BrokerConfig{Name: "m", URL: "http://r", MetricsURLs: []string{"http://r:15692/metrics"}}, wantErr: "without /metrics"},
		{name: "metrics url with a query", cfg: queue.BrokerConfig{Name: "m", URL: "http://r", MetricsURLs: []string{"http://r:15692/?family=x"}}, wantErr: "metrics url http://r:15692/?family=x: query"},
		{name: "metrics urls of a cluster", cfg: queue.BrokerConfig{Name: "m", URL: "http://r:15672", MetricsURLs: []string{"http://r-0:15692", "http://r-1:15692", "http://r-2:15692"}}, wantMode: queue.ModeManagement},
		{name: "a cluster's second metrics url bad", cfg: queue.BrokerConfig{Name: "m", URL: "http://r:15672", MetricsURLs: []string{"http://r-0:15692", "http://r-1:15692/metrics"}}, wantErr: "metrics url http://r-1:15692/metrics: give the endpoint's base"},
		{name: "a node's metrics url twice", cfg: queue.BrokerConfig{Name: "m", URL: "http://r:15672", MetricsURLs: []string{"http://r-0:15692", "http://u:hunter2@r-0:15692/"}}, wantErr: "metrics url http://xxxxx@r-0:15692/ given twice"},
		{name: "metrics url hides password", cfg: queue.BrokerConfig{Name: "m", URL: "http://r", MetricsURLs: []string{"http://u:hunter2@r:port/"}}, wantErr: "metrics url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.cfg
			before.MetricsURLs = slices.Clone(tc.cfg.MetricsURLs)
			err := tc.cfg.Validate()
			if !reflect.DeepEqual(tc.cfg, before) {
				t.Errorf("Validate changed the config")
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				if got := tc.cfg.Mode(); got != tc.wantMode {
					t.Errorf("got mode %v, want %v", got, tc.wantMode)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestParseBroker(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    queue.BrokerConfig
		wantErr string
	}{
		{name: "management", in: "main=http://rabbit:15672", want: queue.BrokerConfig{Name: "main", URL: "http://rabbit:15672"}},
		{name: "spaces trimmed", in: " main = amqp://rabbit ", want: queue.BrokerConfig{Name: "main", URL: "amqp://rabbit"}},
		{name: "no equals, password hidden", in: "amqp://u:hunter2@rabbit", wantErr: "want name=url"},
		{name: "bad url, password hidden", in: "main=amqp://u:hunter2@rabbit/vh", wantErr: `names vhost "vh"`},
		{name: "no scheme, password hidden", in: "main=guest:hunter2@rabbit:15672", wantErr: `scheme "guest"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := queue.ParseBroker(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q contains the password", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# brokers\n\nmain=alice:pa:ss=word\nother-one=bob:x\n")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name             string
		broker           string
		file             string
		env              map[string]string
		wantUser, wantPw string
		wantTLS          [4]string // CAFile, CertFile, KeyFile, ServerName
		wantMetrics      []string
		wantErr          string
	}{
		{name: "file", broker: "main", file: good, wantUser: "alice", wantPw: "pa:ss=word"},
		{name: "env overrides file", broker: "other-one", file: good,
			env:      map[string]string{"HEADROOM_BROKER_OTHER_ONE_PASSWORD": "fromenv"},
			wantUser: "bob", wantPw: "fromenv"},
		{name: "env only", broker: "main", env: map[string]string{"HEADROOM_BROKER_MAIN_USERNAME": "u", "HEADROOM_BROKER_MAIN_PASSWORD": "p"}, wantUser: "u", wantPw: "p"},
		{name: "env tls files", broker: "tls-1", env: map[string]string{"HEADROOM_BROKER_TLS_1_CA_FILE": "ca.pem", "HEADROOM_BROKER_TLS_1_CERT_FILE": "c.pem", "HEADROOM_BROKER_TLS_1_KEY_FILE": "k.pem", "HEADROOM_BROKER_TLS_1_SERVER_NAME": "rabbit"},
			wantUser: "keep", wantPw: "keep", wantTLS: [4]string{"ca.pem", "c.pem", "k.pem", "rabbit"}},
		{name: "env metrics url", broker: "main", env: map[string]string{"HEADROOM_BROKER_MAIN_METRICS_URL": "http://r:15692"},
			wantUser: "keep", wantPw: "keep", wantMetrics: []string{"http://r:15692"}},
		{name: "env metrics urls of a cluster", broker: "main", env: map[string]string{"HEADROOM_BROKER_MAIN_METRICS_URL": "http://r-0:15692, http://r-1:15692"},
			wantUser: "keep", wantPw: "keep", wantMetrics: []string{"http://r-0:15692", "http://r-1:15692"}},
		{name: "env metrics urls with an empty entry", broker: "main", env: map[string]string{"HEADROOM_BROKER_MAIN_METRICS_URL": "http://u:hunter2@r-0:15692,,http://r-1"},
			wantErr: `HEADROOM_BROKER_MAIN_METRICS_URL: url list "http://xxxxx@r-0:15692,,http://r-1": entry 2 is empty`},
		{name: "not listed keeps fields", broker: "absent", file: good, wantUser: "keep", wantPw: "keep"},
		{name: "missing file", broker: "main", file: filepath.Join(dir, "nope"), wantErr: "nope"},
		{name: "bad line hides password", broker: "main", file: write("bad", "main=hunter2\n"), wantErr: "line 1"},
		{name: "duplicate", broker: "main", file: write("dup", "main=a:b\nmain=c:d\n"), wantErr: `line 2: broker "main" listed twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := queue.BrokerConfig{Name: tc.broker, URL: "http://r", Username: "keep", Password: "keep"}
			err := queue.LoadCredentials(&cfg, tc.file, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q contains the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Username != tc.wantUser || cfg.Password != tc.wantPw {
				t.Errorf("got %q/%q, want %q/%q", cfg.Username, cfg.Password, tc.wantUser, tc.wantPw)
			}
			if !slices.Equal(cfg.MetricsURLs, tc.wantMetrics) {
				t.Errorf("got metrics urls %q, want %q", cfg.MetricsURLs, tc.wantMetrics)
			}
			if got := [4]string{cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.ServerName}; got != tc.wantTLS {
				t.Errorf("got TLS settings %q, want %q", got, tc.wantTLS)
			}
		})
	}
	if err := queue.LoadCredentials(nil, "", nil); err == nil {
		t.Errorf("nil config: got nil error")
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "userinfo", in: "amqp://guest:guest@127.0.0.1:5672/", want: "amqp://xxxxx@127.0.0.1:5672/"},
		{name: "inside text", in: `dial "http://u:p%40ss@h/api": refused`, want: `dial "http://xxxxx@h/api": refused`},
		{name: "no userinfo", in: "https://h:15671/api/queues", want: "https://h:15671/api/queues"},
		{name: "raw at sign in password", in: "amqp://u:p@ss@h/", want: "amqp://xxxxx@h/"},
		{name: "no scheme", in: "guest:hunter2@rabbit:15672", want: "xxxxx@rabbit:15672"},
		{name: "empty scheme", in: "://u:hunter2@", want: "://xxxxx@"},
		{name: "raw slash in password", in: "amqp://u:p/ss@h", want: "amqp://xxxxx@h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := queue.RedactURL(tc.in); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzRedactURL: whatever the user name and password, the redacted URL keeps the host and
// loses the userinfo.
func FuzzRedactURL(f *testing.F) {
	f.Add("guest", "guest", "amqp")
	f.Add("a@b", "p/ss w:rd", "https")
	f.Fuzz(func(t *testing.T, user, pass, scheme string) {
		if pass == "" || (scheme != "amqp" && scheme != "https") {
			t.Skip()
		}
		u := url.URL{Scheme: scheme, User: url.UserPassword(user, pass), Host: "broker:1", Path: "/x"}
		got := queue.RedactURL("connect " + u.String() + ": refused")
		if strings.Contains(got, u.User.String()+"@") {
			t.Errorf("RedactURL(%q) = %q: userinfo left", u.String(), got)
		}
		if !strings.Contains(got, "@broker:1/x") {
			t.Errorf("RedactURL(%q) = %q: host lost", u.String(), got)
		}
	})
}

// FuzzParseBroker: no input panics, and a password in the URL never reaches the error.
func FuzzParseBroker(f *testing.F) {
	for _, s := range []string{"main=http://h", "x=amqp://h/v", "=", "a=ftp://h", "m=http://[::1", "M=https://h?q"} {
		f.Add(s)
	}
	const secret = "Pw-9f3kQ"
	f.Fuzz(func(t *testing.T, s string) {
		name, rest, _ := strings.Cut(s, "=")
		if i := strings.Index(rest, "://"); i >= 0 {
			rest = rest[:i+3] + "user:" + secret + "@" + rest[i+3:]
		}
		_, err := queue.ParseBroker(name + "=" + rest)
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("ParseBroker error %q contains the password", err)
		}
	})
}

func TestSelectorValidate(t *testing.T) {
	tests := []struct {
		name    string
		sel     queue.Selector
		wantErr string
	}{
		{name: "queue", sel: queue.Selector{Broker: "b", Queue: "q"}},
		{name: "pattern with op", sel: queue.Selector{Broker: "b", VHost: "v", Pattern: "^q-", Op: queue.OpAvg}},
		{name: "no broker", sel: queue.Selector{Queue: "q"}, wantErr: "broker is empty"},
		{name: "neither", sel: queue.Selector{Broker: "b"}, wantErr: "give a queue name or a pattern"},
		{name: "both", sel: queue.Selector{Broker: "b", Queue: "q", Pattern: "q"}, wantErr: "exclusive"},
		{name: "bad pattern", sel: queue.Selector{Broker: "b", Pattern: "(["}, wantErr: `pattern "(["`},
		{name: "bad op", sel: queue.Selector{Broker: "b", Queue: "q", Op: "median"}, wantErr: `operation "median"`},
		{name: "long name", sel: queue.Selector{Broker: "b", Queue: strings.Repeat("q", 256)}, wantErr: "at most 255"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sel.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseOp(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    queue.Op
		wantErr bool
	}{{"", queue.OpSum, false}, {"sum", queue.OpSum, false}, {"max", queue.OpMax, false}, {"avg", queue.OpAvg, false}, {"SUM", "", true}} {
		got, err := queue.ParseOp(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseOp(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestReaderWithoutBroker(t *testing.T) {
	rd, err := queue.NewReader([]queue.BrokerConfig{{Name: "down", URL: "http://127.0.0.1:1"}}, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the first read waits for a refresh that never comes, until ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := rd.Snapshot(ctx, queue.Selector{Broker: "down", Queue: "q"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("first read without refresh: got %v, want context.DeadlineExceeded", err)
	}
	if _, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "nope", Queue: "q"}); !errors.Is(err, queue.ErrUnknownBroker) {
		t.Errorf("unknown broker: got %v, want ErrUnknownBroker", err)
	}
	if _, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "down"}); err == nil {
		t.Errorf("invalid selector: got nil error")
	}
	select {
	case <-rd.Refreshed("nope"):
	default:
		t.Errorf("Refreshed of an unknown broker: want a closed channel")
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	rd.Start(t.Context()) // after Close: does nothing
	if _, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "down", Queue: "q"}); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}

	for _, tc := range []struct {
		name    string
		brokers []queue.BrokerConfig
		opts    queue.Options
		wantErr string
	}{
		{name: "duplicate broker", brokers: []queue.BrokerConfig{{Name: "a", URL: "http://h"}, {Name: "a", URL: "http://h"}}, wantErr: `broker "a" configured twice`},
		{name: "page size", opts: queue.Options{PageSize: 501}, wantErr: "page size 501"},
		{name: "negative refresh", opts: queue.Options{Refresh: -1}, wantErr: "refresh -1ns"},
		{name: "negative consumers ttl", opts: queue.Options{ConsumersTTL: -2 * time.Second}, wantErr: "consumers ttl -2s"},
		{name: "missing CA file", brokers: []queue.BrokerConfig{{Name: "a", URL: "https://h", CAFile: "/nonexistent/ca.pem"}}, wantErr: "caFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := queue.NewReader(tc.brokers, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
