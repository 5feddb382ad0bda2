package dashcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client runs queries against a Prometheus server's HTTP API.
type Client struct {
	// URL is the server's base URL, such as http://127.0.0.1:9090.
	URL string
	// HTTP is the client to use; nil means one with a 10 s timeout.
	HTTP *http.Client
}

// Series is one labelled time series of a query result. An instant query gives one point.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Instant evaluates expr at the current time.
func (c Client) Instant(ctx context.Context, expr string) ([]Series, error) {
	return c.query(ctx, "/api/v1/query", url.Values{"query": {expr}})
}

// Range evaluates expr from start to end every step.
func (c Client) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	return c.query(ctx, "/api/v1/query_range", url.Values{
		"query": {expr},
		"start": {strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', 3, 64)},
	})
}

func (c Client) query(ctx context.Context, path string, v url.Values) ([]Series, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path+"?"+v.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", v.Get("query"), err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", v.Get("query"), err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: decode %s answer: %w", v.Get("query"), resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", v.Get("query"), body.ErrorType, body.Error)
	}
	if rt := body.Data.ResultType; rt != "vector" && rt != "matrix" {
		return nil, fmt.Errorf("query %q: result type %q, want vector or matrix", v.Get("query"), rt)
	}
	out := make([]Series, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s := Series{Labels: r.Metric}
		vals := r.Values
		if r.Value != nil {
			vals = [][]any{r.Value}
		}
		for _, pair := range vals {
			p, err := point(pair)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", v.Get("query"), err)
			}
			s.Points = append(s.Points, p)
		}
		out = append(out, s)
	}
	return out, nil
}

func point(pair []any) (Point, error) {
	if len(pair) != 2 {
		return Point{}, fmt.Errorf("sample %v: want [time, value]", pair)
	}
	ts, ok := pair[0].(float64)
	vs, ok2 := pair[1].(string)
	if !ok || !ok2 {
		return Point{}, fmt.Errorf("sample %v: want [number, string]", pair)
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return Point{}, fmt.Errorf("sample value %q: %w", vs, err)
	}
	sec, frac := math.Modf(ts)
	return Point{T: time.Unix(int64(sec), int64(frac*1e9)), V: v}, nil
}
