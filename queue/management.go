package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// queueColumns trims /api/queues to what a Snapshot needs. messages_details.samples (with
// lengths_age=1) carries the timestamp of the statistics sample the depths come from.
const queueColumns = "name,vhost,messages_ready,messages_unacknowledged,consumers," +
	"message_stats.publish_details.rate,message_stats.deliver_get_details.rate,messages_details.samples"

// depthColumns are the columns of the stats-free listing (Selector.DepthsOnly).
const depthColumns = "name,vhost,messages_ready,messages_unacknowledged"

const channelColumns = "name,messages_unacknowledged"

// maxErrorBody bounds how much of an error response is read and quoted.
const maxErrorBody = 512

type managementSource struct {
	name      string
	api       endpoint
	metrics   []endpoint // BrokerConfig.MetricsURLs, one per node
	secrets   []string
	client    *http.Client
	transport *http.Transport
	pageSize  int
	timeout   time.Duration
	reqs      atomic.Int64
}

// endpoint is one HTTP endpoint of a broker: where it is, how to ask it, and what to tell
// the operator when it refuses.
type endpoint struct {
	base, user, pwd string
	header          http.Header
	hint            func(status int, reason string) string
}

func newManagementSource(c BrokerConfig, o Options) (*managementSource, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 2
	var rt http.RoundTripper = tr
	if o.WrapTransport != nil {
		rt = o.WrapTransport(tr)
	}
	user, pwd := c.credentials()
	s := &managementSource{
		name: c.Name,
		api: endpoint{base: c.baseURL(), user: user, pwd: pwd,
			header: http.Header{"Accept": {"application/json"}}, hint: managementHint},
		secrets:   c.secrets(),
		client:    &http.Client{Transport: rt},
		transport: tr,
		pageSize:  o.PageSize,
		timeout:   o.Timeout,
	}
	s.metrics = c.metricsEndpoints()
	return s, nil
}

func (s *managementSource) requests() int64 { return s.reqs.Load() }
func (s *managementSource) close()          { s.transport.CloseIdleConnections() }

// apiQueue is one item of /api/queues with queueColumns.
type apiQueue struct {
	Name  string `json:"name"`
	VHost string `json:"vhost"`
	// Depths are absent until the broker has emitted the queue's first statistics (just
	// declared, or just recovered after a restart): absent is unknown, not zero.
	Ready        *int64 `json:"messages_ready"`
	Unacked      *int64 `json:"messages_unacknowledged"`
	Consumers    int64  `json:"consumers"`
	MessageStats *struct {
		Publish    *apiRate `json:"publish_details"`
		DeliverGet *apiRate `json:"deliver_get_details"`
	} `json:"message_stats"`
	MessagesDetails *struct {
		Samples []struct {
			Timestamp int64 `json:"timestamp"` // ms since the epoch
		} `json:"samples"`
	} `json:"messages_details"`
}

type apiRate struct {
	Rate float64 `json:"rate"`
}

type apiPage[T any] struct {
	Items     []T `json:"items"`
	Page      int `json:"page"`
	PageCount int `json:"page_count"`
}

type apiConsumer struct {
	Tag      string `json:"consumer_tag"`
	Prefetch int    `json:"prefetch_count"`
	Queue    struct {
		Name  string `json:"name"`
		VHost string `json:"vhost"`
	} `json:"queue"`
	Channel struct {
		Name     string `json:"name"`
		Number   int    `json:"number"`
		PeerHost string `json:"peer_host"`
		PeerPort int    `json:"peer_port"`
	} `json:"channel_details"`
}

type apiChannel struct {
	Name    string `json:"name"`
	Unacked int64  `json:"messages_unacknowledged"`
}

// fetch reads the queue list (one vhost, or all vhosts when several are wanted) page by page,
// and the consumers and channels when asked.
func (s *managementSource) fetch(ctx context.Context, p plan) (*result, error) {
	res := newResult()
	if len(p.vhosts) > 0 {
		fetch := s.fetchQueues
		switch {
		case p.depthsOnly && len(s.metrics) > 0:
			fetch = s.fetchDepthsFromMetrics
		case p.depthsOnly:
			fetch = s.fetchDepths
		}
		if err := fetch(ctx, p.vhosts, res); err != nil {
			return nil, err
		}
	}
	if len(p.consumerVHosts) > 0 {
		if err := s.fetchConsumers(ctx, p.consumerVHosts, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func scopedPath(list string, vhosts []string) string {
	if len(vhosts) == 1 {
		return list + "/" + url.PathEscape(vhosts[0])
	}
	return list
}

func (s *managementSource) fetchQueues(ctx context.Context, vhosts []string, res *result) error {
	path := scopedPath("/api/queues", vhosts)
	for page := 1; ; page++ {
		q := url.Values{
			"columns":     {queueColumns},
			"lengths_age": {"1"}, "lengths_incr": {"1"},
			"pagination": {"true"}, "page": {strconv.Itoa(page)}, "page_size": {strconv.Itoa(s.pageSize)},
		}
		var pg apiPage[apiQueue]
		sent := time.Now()
		status, err := s.get(ctx, path, q, &pg)
		if status == http.StatusNotFound && len(vhosts) == 1 {
			break // the vhost does not exist, so neither does any queue in it
		}
		if err != nil {
			return err
		}
		for _, it := range pg.Items {
			res.queues[qkey{it.VHost, it.Name}] = it.stat(sent)
		}
		if page >= pg.PageCount {
			break
		}
	}
	for _, v := range vhosts {
		res.listed[v] = true
	}
	return nil
}

// fetchDepths reads the queue list without statistics, in one request: the broker answers
// from its queue records and totals instead of rendering its statistics, and pages would each
// cost it a whole listing. An item holds about 80 bytes, so 100,000 queues are 8 MB.
func (s *managementSource) fetchDepths(ctx context.Context, vhosts []string, res *result) error {
	q := url.Values{"disable_stats": {"true"}, "enable_queue_totals": {"true"}, "columns": {depthColumns}}
	var items []apiQueue
	sent := time.Now()
	status, err := s.get(ctx, scopedPath("/api/queues", vhosts), q, &items)
	if err != nil && (status != http.StatusNotFound || len(vhosts) != 1) {
		return err
	}
	for _, it := range items { // none when the one vhost does not exist
		st := queueStat{at: sent, pending: it.Ready == nil || it.Unacked == nil}
		if !st.pending {
			st.ready, st.unacked = *it.Ready, *it.Unacked
		}
		res.queues[qkey{it.VHost, it.Name}] = st
	}
	for _, v := range vhosts {
		res.listed[v] = true
	}
	return nil
}

func (it apiQueue) stat(sent time.Time) queueStat {
	st := queueStat{consumers: it.Consumers, at: sent}
	if it.Ready == nil || it.Unacked == nil {
		st.pending = true
	} else {
		st.ready, st.unacked = *it.Ready, *it.Unacked
	}
	if ms := it.MessageStats; ms != nil {
		st.ratesKnown = true
		if ms.Publish != nil {
			st.publishRate = ms.Publish.Rate
		}
		if ms.DeliverGet != nil {
			st.deliverRate = ms.DeliverGet.Rate
		}
	}
	if md := it.MessagesDetails; md != nil {
		var last int64
		for _, smp := range md.Samples {
			last = max(last, smp.Timestamp)
		}
		// Sample timestamps sit on interval boundaries and may round past the moment of the
		// request; the numbers cannot be newer than the request.
		if last > 0 && time.UnixMilli(last).Before(sent) {
			st.at = time.UnixMilli(last)
		}
	}
	return st
}

func (s *managementSource) fetchConsumers(ctx context.Context, vhosts []string, res *result) error {
	var consumers []apiConsumer
	if _, err := s.get(ctx, scopedPath("/api/consumers", vhosts), nil, &consumers); err != nil {
		return err
	}
	chPath := "/api/channels"
	if len(vhosts) == 1 {
		chPath = "/api/vhosts/" + url.PathEscape(vhosts[0]) + "/channels"
	}
	var channels []apiChannel
	if _, err := s.get(ctx, chPath, url.Values{"columns": {channelColumns}}, &channels); err != nil {
		return err
	}
	unacked := make(map[string]int64, len(channels))
	for _, c := range channels {
		unacked[c.Name] = c.Unacked
	}
	for _, c := range consumers {
		res.consumers = append(res.consumers, Consumer{
			PeerHost: c.Channel.PeerHost,
			PeerPort: c.Channel.PeerPort,
			Channel:  c.Channel.Number,
			Tag:      c.Tag,
			Queue:    c.Queue.Name,
			VHost:    c.Queue.VHost,
			Unacked:  unacked[c.Channel.Name],
			Prefetch: c.Prefetch,
		})
	}
	return nil
}

// get sends one GET to the management API and decodes a 2xx JSON body into out. It returns
// the HTTP status (0 when no response arrived).
func (s *managementSource) get(ctx context.Context, path string, q url.Values, out any) (int, error) {
	return s.send(ctx, s.api, path, q, func(body io.Reader) error {
		if err := json.NewDecoder(body).Decode(out); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
		return nil
	})
}

// send sends one GET of path (and the query q) to e and hands a 2xx body to read. It returns
// the HTTP status (0 when no response arrived); a non-2xx answer is an *HTTPError.
func (s *managementSource) send(ctx context.Context, e endpoint, path string, q url.Values, read func(io.Reader) error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	u := e.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	if e.user != "" || e.pwd != "" {
		req.SetBasicAuth(e.user, e.pwd)
	}
	for k, v := range e.header {
		req.Header[k] = v
	}
	s.reqs.Add(1)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		reason := apiReason(b)
		return resp.StatusCode, &HTTPError{Path: path, Status: resp.StatusCode, Reason: reason, hint: e.hint(resp.StatusCode, reason)}
	}
	if err := read(resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, nil
}

// HTTPError is a non-2xx answer of the management API or the Prometheus endpoint.
type HTTPError struct {
	Path   string
	Status int
	Reason string // the API's "reason", or the start of the body
	hint   string // what to do about it, when known
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("GET %s: %d %s", e.Path, e.Status, http.StatusText(e.Status))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

// managementHint says what a refusal of the management API asks of the operator.
func managementHint(status int, reason string) string {
	switch status {
	case http.StatusUnauthorized:
		if strings.Contains(reason, "management user") {
			return "give the user the monitoring tag"
		}
		return "check the broker's username and password"
	case http.StatusForbidden:
		return "the user needs the monitoring tag and permissions on the vhost"
	}
	return ""
}

func apiReason(body []byte) string {
	var e struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Reason != "" || e.Error != "") {
		return strings.TrimSpace(e.Error + ": " + e.Reason)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
