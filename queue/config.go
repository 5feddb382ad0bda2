package queue

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// BrokerConfig names one RabbitMQ broker the scaler reads. The URL scheme picks the mode:
// http:// or https:// is the management HTTP API (the recommended mode: depths, unacked,
// consumers, rates, patterns, per-consumer detail); amqp:// or amqps:// is AMQP 0-9-1 passive
// declare (ready messages and consumers of exact queue names only, in-flight work invisible).
//
// Credentials come from Username/Password when set, else from the URL's userinfo. They never
// appear in errors (see RedactURL).
type BrokerConfig struct {
	// Name identifies the broker in selectors, metrics and credential keys: lowercase letters,
	// digits and '-', at most 63 characters.
	Name string
	// URL is the management API base (a path prefix is allowed) or the AMQP URL. An AMQP URL
	// carries no vhost: the vhost comes from each Selector.
	URL string
	// Username and Password override the URL's userinfo.
	Username, Password string
	// CAFile is a PEM bundle of CAs to trust instead of the system roots (https/amqps only).
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key (https/amqps only, both or
	// neither).
	CertFile, KeyFile string
	// ServerName overrides the name checked against the server certificate (https/amqps only).
	ServerName string
	// MetricsURLs are the broker's Prometheus endpoints (the rabbitmq_prometheus plugin, port
	// 15692 by default), http:// or https://, one per node of the cluster, for a
	// management-mode broker only. When set, refreshes that need queue depths alone read them
	// from /metrics/detailed of every node instead of listing /api/queues, at a fraction of
	// the broker's CPU; the numbers are then the queue's last statistics emission (up to
	// collect_statistics_interval old, 5 s by default) instead of the queue's current count.
	// Each node reports the queues it hosts (a classic queue's node, a quorum queue's leader),
	// so every node must be listed: a queue whose node is not is never seen. Rates and
	// consumer detail still come from the management API. Only each URL's own userinfo is
	// sent to it; the TLS settings above apply to them too.
	MetricsURLs []string
}

// Mode is how a broker is read.
type Mode int

const (
	// ModeManagement reads the management HTTP API.
	ModeManagement Mode = iota + 1
	// ModeAMQP passively declares queues over AMQP 0-9-1.
	ModeAMQP
)

func (m Mode) String() string {
	switch m {
	case ModeManagement:
		return "management"
	case ModeAMQP:
		return "amqp"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate reports the first bad field, naming it and its value (URLs redacted). It never
// changes c.
func (c BrokerConfig) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("broker name %q: want lowercase letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit", c.Name)
	}
	_, err := c.parseURL()
	if err != nil {
		return err
	}
	if len(c.MetricsURLs) > 0 {
		if c.Mode() != ModeManagement {
			return fmt.Errorf("broker %q: metrics url %s set but url %s is not the management API (http:// or https://): depths over AMQP come from passive declares", c.Name, RedactURL(c.MetricsURLs[0]), RedactURL(c.URL))
		}
		if _, err := c.parseMetricsURLs(); err != nil {
			return err
		}
	}
	secure := c.tls()
	for _, f := range []struct{ field, value string }{
		{"caFile", c.CAFile}, {"certFile", c.CertFile}, {"keyFile", c.KeyFile}, {"serverName", c.ServerName},
	} {
		if f.value != "" && !secure {
			return fmt.Errorf("broker %q: %s %q set but url %s is not https:// or amqps://", c.Name, f.field, f.value, RedactURL(c.URL))
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("broker %q: certFile %q and keyFile %q: give both or neither", c.Name, c.CertFile, c.KeyFile)
	}
	return nil
}

// Mode is the broker's mode from its URL scheme; zero when the URL is invalid.
func (c BrokerConfig) Mode() Mode {
	u, err := c.parseURL()
	if err != nil {
		return 0
	}
	switch u.Scheme {
	case "http", "https":
		return ModeManagement
	}
	return ModeAMQP
}

// tls reports whether either of the broker's URLs is TLS.
func (c BrokerConfig) tls() bool {
	u, err := c.parseURL()
	if err == nil && (u.Scheme == "https" || u.Scheme == "amqps") {
		return true
	}
	ms, _ := c.parseMetricsURLs()
	for _, m := range ms {
		if m.Scheme == "https" {
			return true
		}
	}
	return false
}

// parseMetricsURLs parses MetricsURLs; each must be a node's endpoint base, once.
func (c BrokerConfig) parseMetricsURLs() ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(c.MetricsURLs))
	seen := map[string]bool{}
	for _, raw := range c.MetricsURLs {
		u, err := c.checkURL("metrics url", raw, "http", "https")
		if err != nil {
			return nil, err
		}
		if p := strings.TrimSuffix(u.Path, "/"); strings.HasSuffix(p, "/metrics") || strings.HasSuffix(p, "/metrics/detailed") {
			return nil, fmt.Errorf("broker %q: metrics url %s: give the endpoint's base (scheme, host, port), without /metrics", c.Name, RedactURL(raw))
		}
		if b := bare(u); seen[b] {
			return nil, fmt.Errorf("broker %q: metrics url %s given twice", c.Name, RedactURL(raw))
		} else {
			seen[b] = true
		}
		out = append(out, u)
	}
	return out, nil
}

// metricsEndpoints lists MetricsURLs as the Prometheus endpoints of the nodes: each URL
// without userinfo and without a trailing slash, and its userinfo; none when one is invalid.
func (c BrokerConfig) metricsEndpoints() []endpoint {
	us, err := c.parseMetricsURLs()
	if err != nil {
		return nil
	}
	out := make([]endpoint, len(us))
	for i, u := range us {
		out[i] = endpoint{base: bare(u), header: metricsHeader, hint: metricsHint}
		if u.User != nil {
			out[i].user = u.User.Username()
			out[i].pwd, _ = u.User.Password()
		}
	}
	return out
}

// SplitURLs reads a comma-separated list of URLs (HEADROOM_BROKER_<NAME>_METRICS_URL, the
// URL part of --broker-metrics), naming the list when an entry is empty.
func SplitURLs(list string) ([]string, error) {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	i := slices.Index(parts, "")
	if i < 0 {
		return parts, nil
	}
	shown := make([]string, len(parts))
	for j, p := range parts {
		shown[j] = RedactURL(p)
	}
	return nil, fmt.Errorf("url list %q: entry %d is empty", strings.Join(shown, ","), i+1)
}

func (c BrokerConfig) parseURL() (*url.URL, error) {
	if c.URL == "" {
		return nil, fmt.Errorf("broker %q: url is empty", c.Name)
	}
	u, err := c.checkURL("url", c.URL, "http", "https", "amqp", "amqps")
	if err != nil {
		return nil, err
	}
	if (u.Scheme == "amqp" || u.Scheme == "amqps") && u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("broker %q: url %s names vhost %q: give the vhost in the selector, not the broker url", c.Name, RedactURL(c.URL), strings.TrimPrefix(u.Path, "/"))
	}
	return u, nil
}

// checkURL parses one of the broker's URLs (what names which: "url", "metrics url"): a
// scheme of the list, a host, no query or fragment. Errors show the URL redacted.
func (c BrokerConfig) checkURL(what, raw string, schemes ...string) (*url.URL, error) {
	shown := RedactURL(raw)
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error echoes the URL: do not wrap it.
		return nil, fmt.Errorf("broker %q: %s %s does not parse", c.Name, what, shown)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return nil, fmt.Errorf("broker %q: %s %s: scheme %q, want %s", c.Name, what, shown, u.Scheme, orList(schemes))
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("broker %q: %s %s has no host", c.Name, what, shown)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("broker %q: %s %s: query and fragment are not supported", c.Name, what, shown)
	}
	return u, nil
}

// orList is "a, b or c".
func orList(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

// credentials returns the user name and password to use: the fields, else the URL's.
func (c BrokerConfig) credentials() (user, pass string) {
	user, pass = c.Username, c.Password
	if u, err := url.Parse(c.URL); err == nil && u.User != nil {
		if user == "" {
			user = u.User.Username()
		}
		if pass == "" {
			pass, _ = u.User.Password()
		}
	}
	return user, pass
}

// secrets lists what must never appear in an error about this broker.
func (c BrokerConfig) secrets() []string {
	_, pass := c.credentials()
	out := []string{pass, c.Password}
	for _, e := range c.metricsEndpoints() {
		out = append(out, e.pwd)
	}
	return out
}

// baseURL is the URL without userinfo and without a trailing slash.
func (c BrokerConfig) baseURL() string {
	u, err := c.parseURL()
	if err != nil {
		return ""
	}
	return bare(u)
}

// bare is u without userinfo and without a trailing slash.
func bare(u *url.URL) string {
	u.User = nil
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String()
}

// tlsConfig builds the client TLS configuration, or nil for plain http/amqp.
func (c BrokerConfig) tlsConfig() (*tls.Config, error) {
	if !c.tls() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker %q: caFile: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker %q: caFile %q holds no PEM certificate", c.Name, c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker %q: client certificate %q / key %q: %w", c.Name, c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ParseBroker parses "name=url", the form of the scaler's --broker flag. The result is
// validated.
func ParseBroker(s string) (BrokerConfig, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok {
		return BrokerConfig{}, fmt.Errorf("broker %s: want name=url", RedactURL(s))
	}
	c := BrokerConfig{Name: strings.TrimSpace(name), URL: strings.TrimSpace(u)}
	if err := c.Validate(); err != nil {
		return BrokerConfig{}, err
	}
	return c, nil
}

// BrokerEnv returns the name of the environment variable that sets one per-broker setting:
// HEADROOM_BROKER_<NAME>_<KEY>, NAME upper-cased with '-' turned into '_'. LoadCredentials
// reads the keys USERNAME, PASSWORD, CA_FILE, CERT_FILE, KEY_FILE, SERVER_NAME and
// METRICS_URL.
func BrokerEnv(broker, key string) string {
	return "HEADROOM_BROKER_" + strings.ToUpper(strings.ReplaceAll(broker, "-", "_")) + "_" + key
}

// LoadCredentials fills cfg.Username and cfg.Password, and the TLS file settings. Sources,
// later ones winning: the credentials file (when file is not empty), then the environment
// (see BrokerEnv): HEADROOM_BROKER_<NAME>_USERNAME, _PASSWORD, _CA_FILE, _CERT_FILE,
// _KEY_FILE, _SERVER_NAME and _METRICS_URL (a comma-separated list: one URL per node). An
// unset or empty variable leaves its field alone. Call Validate afterwards (NewReader does).
//
// The credentials file has one broker per line, "name=username:password"; the password is
// everything after the first ':' and may itself contain ':' and '='. Blank lines and lines
// starting with '#' are ignored. Errors name the file and line number, never a password.
func LoadCredentials(cfg *BrokerConfig, file string, getenv func(string) string) error {
	if cfg == nil {
		return errors.New("load credentials: nil broker config")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("load credentials for broker %q: %w", cfg.Name, err)
		}
		creds, err := parseCredentials(b)
		if err != nil {
			return fmt.Errorf("load credentials for broker %q: %s: %w", cfg.Name, file, err)
		}
		if c, ok := creds[cfg.Name]; ok {
			cfg.Username, cfg.Password = c[0], c[1]
		}
	}
	if getenv != nil {
		for _, f := range []struct {
			key   string
			field *string
		}{
			{"USERNAME", &cfg.Username}, {"PASSWORD", &cfg.Password},
			{"CA_FILE", &cfg.CAFile}, {"CERT_FILE", &cfg.CertFile}, {"KEY_FILE", &cfg.KeyFile},
			{"SERVER_NAME", &cfg.ServerName},
		} {
			if v := getenv(BrokerEnv(cfg.Name, f.key)); v != "" {
				*f.field = v
			}
		}
		if v := getenv(BrokerEnv(cfg.Name, "METRICS_URL")); v != "" {
			urls, err := SplitURLs(v)
			if err != nil {
				return fmt.Errorf("load settings for broker %q: %s: %w", cfg.Name, BrokerEnv(cfg.Name, "METRICS_URL"), err)
			}
			cfg.MetricsURLs = urls
		}
	}
	return nil
}

// parseCredentials reads "name=username:password" lines.
func parseCredentials(b []byte) (map[string][2]string, error) {
	out := map[string][2]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || !nameRE.MatchString(name) {
			return nil, fmt.Errorf("line %d: want name=username:password with a valid broker name", n)
		}
		user, pass, ok := strings.Cut(rest, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d (broker %q): want name=username:password", n, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("line %d: broker %q listed twice", n, name)
		}
		out[name] = [2]string{user, pass}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
