package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The rabbitmq_prometheus plugin's per-queue depth metrics, in the queue_coarse_metrics family
// of its /metrics/detailed endpoint (RabbitMQ 3.10 and later).
const (
	metricsPath   = "/metrics/detailed"
	metricsFamily = "queue_coarse_metrics"
	metricReady   = "rabbitmq_detailed_queue_messages_ready"
	metricUnacked = "rabbitmq_detailed_queue_messages_unacked"
)

// maxMetricsBodyBytes bounds the endpoint's answer: about 300 bytes per queue, so some
// 800,000 queues (a variable for tests).
var maxMetricsBodyBytes int64 = 256 << 20

// fetchDepthsFromMetrics reads every queue's ready and unacknowledged counts of the vhosts
// from the Prometheus endpoint, in one request. The plugin answers from the statistics the
// queues last emitted, without the management plugin's per-queue formatting: for 1,000
// queues about a tenth of the broker's CPU of the stats-free listing (docs/benchmarks.md,
// BenchmarkBrokerCPU1000). A queue appears only once it has emitted statistics, so an absent
// one is unknown (just declared, the broker just restarted, or no such queue), not missing.
func (s *managementSource) fetchDepthsFromMetrics(ctx context.Context, vhosts []string, res *result) error {
	q := url.Values{"family": {metricsFamily}, "vhost": vhosts}
	sent := time.Now()
	_, err := s.send(ctx, *s.metrics, metricsPath, q, func(r io.Reader) error {
		body := &io.LimitedReader{R: r, N: maxMetricsBodyBytes + 1}
		stats, err := parseQueueMetrics(body, sent)
		if err != nil {
			return err
		}
		if body.N == 0 { // a cut body would leave queues out, unseen
			return fmt.Errorf("the response is larger than %d MiB", maxMetricsBodyBytes>>20)
		}
		for k, st := range stats {
			res.queues[k] = st
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range vhosts {
		res.statsOnly[v] = true
	}
	return nil
}

// metricsHeader asks for the text format, uncompressed: compressing it would cost the broker
// CPU, which is what this read saves, for about 300 KB per 1,000 queues.
var metricsHeader = http.Header{"Accept": {"text/plain;version=0.0.4"}, "Accept-Encoding": {"identity"}}

// metricsHint says what a refusal of the Prometheus endpoint asks of the operator.
func metricsHint(status int, _ string) string {
	switch status {
	case http.StatusNotFound, http.StatusNotAcceptable:
		return "the metrics url must be the rabbitmq_prometheus plugin's endpoint, RabbitMQ 3.10 or later, e.g. http://rabbit:15692"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "the endpoint wants credentials: give them in the metrics url"
	}
	return ""
}

// parseQueueMetrics reads the ready and unacknowledged counts by queue out of the text
// exposition of the queue_coarse_metrics family. A queue with only one of the two is left out
// (unknown), as is a line whose labels do not parse.
//
// RabbitMQ 3.10's endpoint writes label values without escaping them (a queue named
// `a "b"` comes out as queue="a "b""), which a strict exposition parser rejects, and with it
// every other queue of the response. Each line is therefore read on its own: first as the
// format says (escaped), then, when that fails, as the raw form, vhost="…",queue="…".
func parseQueueMetrics(r io.Reader, at time.Time) (map[qkey]queueStat, error) {
	const hasReady, hasUnacked = 1, 2
	type partial struct {
		st   queueStat
		have uint8
	}
	read := map[qkey]partial{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var which uint8
		var rest []byte
		switch {
		case bytes.HasPrefix(line, []byte(metricReady+"{")):
			which, rest = hasReady, line[len(metricReady):]
		case bytes.HasPrefix(line, []byte(metricUnacked+"{")):
			which, rest = hasUnacked, line[len(metricUnacked):]
		default:
			continue
		}
		k, ok, v, err := parseQueueSample(string(rest))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", line, err)
		}
		if !ok {
			continue
		}
		p := read[k]
		if which == hasReady {
			p.st.ready = v
		} else {
			p.st.unacked = v
		}
		p.have |= which
		read[k] = p
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the metrics: %w", err)
	}
	out := make(map[qkey]queueStat, len(read))
	for k, p := range read {
		if p.have == hasReady|hasUnacked {
			p.st.at = at
			out[k] = p.st
		}
	}
	return out, nil
}

// parseQueueSample reads `{labels} value` (an optional timestamp after the value is
// ignored). ok is false when the labels carry no vhost and queue; the error says the value is
// not a count.
func parseQueueSample(s string) (k qkey, ok bool, v int64, err error) {
	end := strings.LastIndexByte(s, '}')
	if end < 0 {
		return qkey{}, false, 0, errors.New("want {labels} value")
	}
	value := strings.TrimLeft(s[end+1:], " ")
	if sp := strings.IndexByte(value, ' '); sp >= 0 {
		value = value[:sp] // a timestamp follows
	}
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f > math.MaxInt64/2 {
		return qkey{}, false, 0, fmt.Errorf("value %q is not a count", value)
	}
	block := s[1:end]
	if k, ok = escapedLabels(block); !ok {
		k, ok = rawLabels(block)
	}
	return k, ok, int64(f), nil
}

// escapedLabels reads the vhost and queue labels out of name="value",... as the exposition
// format writes it: backslash, double quote and line feed escaped with a backslash, nothing
// else. Both labels must be there.
func escapedLabels(s string) (qkey, bool) {
	var k qkey
	var hasV, hasQ bool
	for s != "" {
		eq := strings.Index(s, `="`)
		if eq <= 0 {
			return qkey{}, false
		}
		name := s[:eq]
		s = s[eq+2:]
		value, n, ok := unescapeLabel(s)
		if !ok {
			return qkey{}, false
		}
		switch name {
		case "vhost":
			k.vhost, hasV = value, true
		case "queue":
			k.name, hasQ = value, true
		}
		s = s[n:]
		switch {
		case s == "":
		case s[0] == ',':
			s = s[1:]
		default:
			return qkey{}, false
		}
	}
	return k, hasV && hasQ
}

// unescapeLabel reads one escaped label value up to its closing quote; n counts the bytes
// read, the quote included. Without escapes the value is a substring of s.
func unescapeLabel(s string) (value string, n int, ok bool) {
	i := strings.IndexAny(s, `"\`)
	if i < 0 {
		return "", 0, false
	}
	if s[i] == '"' {
		return s[:i], i + 1, true
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), i + 1, true
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", 0, false
		}
		switch s[i] {
		case '\\', '"':
			b.WriteByte(s[i])
		case 'n':
			b.WriteByte('\n')
		default:
			return "", 0, false
		}
	}
	return "", 0, false
}

// rawLabels reads the unescaped form RabbitMQ 3.10 writes: vhost="V",queue="Q", V and Q
// verbatim. A vhost whose name holds `",queue="` is not told apart; no other is misread.
func rawLabels(s string) (qkey, bool) {
	const head, mid = `vhost="`, `",queue="`
	if !strings.HasPrefix(s, head) || !strings.HasSuffix(s, `"`) {
		return qkey{}, false
	}
	body := s[len(head) : len(s)-1]
	i := strings.Index(body, mid)
	if i < 0 {
		return qkey{}, false
	}
	return qkey{vhost: body[:i], name: body[i+len(mid):]}, true
}
