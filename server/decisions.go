package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"

	"github.com/headroom-autoscaler/headroom/scaler"
)

// Decisions is the planner's latest pass as an operator reads it: every trigger that points
// at this scaler, what it answers KEDA and why. The metrics carry the same numbers per
// ScaledObject; this also has the triggers without a decision, with the error KEDA gets.
type Decisions struct {
	// At is when the pass ran; AgeSeconds how long before the page was made.
	At         time.Time `json:"at"`
	AgeSeconds float64   `json:"ageSeconds"`
	// Error is set when the ScaledObjects could not be listed (no trigger then has a decision).
	Error     string          `json:"error,omitempty"`
	Decisions []TriggerAnswer `json:"decisions"`
}

// TriggerAnswer is one trigger's answer. When Error is set there is no decision: KEDA gets
// Error as the call's status and applies its fallback, and the numbers are those read before
// the error (zero when none were).
type TriggerAnswer struct {
	Namespace    string `json:"namespace"`
	ScaledObject string `json:"scaledObject"`
	// Target is the scale target, "Kind/name"; Queue the broker and queue(s) read.
	Target string `json:"target"`
	Queue  string `json:"queue"`

	Replicas int32  `json:"replicas"`
	Limit    string `json:"limit"`
	Explain  string `json:"explain"`
	Error    string `json:"error,omitempty"`

	Need    int32 `json:"need"`
	Current int32 `json:"current"`
	Ready   int32 `json:"ready"`
	Pending int32 `json:"pending"`
	Max     int32 `json:"max"`
	// Fit is how many more workers fit in the cluster; Share how many this trigger may add
	// once the room is shared with the other ScaledObjects that want more.
	Fit   int32 `json:"fit"`
	Share int32 `json:"share"`
	// Busy is the workers holding unacknowledged messages; BusyUnknown, when set, says why
	// they are not known (Busy is then 0).
	Busy        int32  `json:"busy"`
	BusyUnknown string `json:"busyUnknown,omitempty"`
	// busySkipped: BusyUnknown because the consumers were not read (no scale-down pending),
	// not because they could not be mapped to pods; the table shows "-" rather than "?".
	busySkipped bool

	// HPA lists what keeps the HPA from running the answer as it is: the ScaledObject's
	// metricType, other triggers, and HPA behavior (as `scaler check` reports them).
	HPA []string `json:"hpa,omitempty"`

	MessagesReady   int64 `json:"messagesReady"`
	MessagesUnacked int64 `json:"messagesUnacked"`
	// SnapshotAgeSeconds is the age of the queue reading the decision used (0: none).
	SnapshotAgeSeconds float64 `json:"snapshotAgeSeconds"`
}

// Decisions returns the latest pass's answers, sorted by namespace, ScaledObject and trigger.
func (s *Server) Decisions() Decisions {
	now := s.now()
	pl := s.planner.current()
	out := Decisions{At: pl.at, Decisions: []TriggerAnswer{}}
	if !pl.at.IsZero() {
		out.AgeSeconds = now.Sub(pl.at).Seconds()
	}
	if pl.clusterErr != nil {
		out.Error = "ScaledObjects not listed: " + pl.clusterErr.Error()
	}
	for _, k := range pl.sortedKeys() {
		out.Decisions = append(out.Decisions, answerOf(pl.entries[k], now))
	}
	return out
}

func answerOf(e *entry, now time.Time) TriggerAnswer {
	a := TriggerAnswer{Namespace: e.so.Namespace, ScaledObject: e.so.Name}
	ref := e.so.Target
	if e.cfg != nil {
		ref = targetOf(e.cfg, e.so)
		a.Queue = fmt.Sprintf("%s %s", e.cfg.Selector.Broker, describe(e.cfg.Selector))
	}
	a.Target = ref.Kind + "/" + ref.Name
	for _, f := range e.so.Warnings {
		a.HPA = append(a.HPA, f.String())
	}
	w := e.workload
	a.Current, a.Ready, a.Pending, a.Fit, a.Share = w.Current, w.Ready, w.Pending, w.Fit, e.share
	a.MessagesReady, a.MessagesUnacked = e.snap.Ready, e.snap.Unacked
	if !e.snap.Fetched.IsZero() {
		a.SnapshotAgeSeconds = now.Sub(e.snap.Fetched).Seconds()
	}
	if e.err != nil {
		a.Limit = string(scaler.LimitError)
		a.Error = status.Convert(e.err).Message()
		a.Explain = "no decision: KEDA's fallback applies"
		return a
	}
	d := e.dec
	a.Replicas, a.Limit, a.Explain = d.Replicas, string(d.Limit), e.explain()
	a.Need, a.Max = d.Need, d.Max
	if e.busy.known {
		a.Busy = e.busy.busy
	} else {
		a.BusyUnknown, a.busySkipped = e.busy.why, e.busy.skipped
	}
	return a
}

// DecisionsHandler serves Decisions over HTTP: a table by default, JSON with format=json or
// an Accept header of application/json. namespace= and scaledobject= keep only the
// triggers of that namespace or ScaledObject name.
func (s *Server) DecisionsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, fmt.Sprintf("method %s not allowed: use GET", r.Method), http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		for k := range q {
			switch k {
			case "format", "namespace", "scaledobject":
			default:
				http.Error(w, fmt.Sprintf("unknown parameter %q (known: format, namespace, scaledobject)", k), http.StatusBadRequest)
				return
			}
		}
		asJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
		switch f := q.Get("format"); f {
		case "":
		case "json":
			asJSON = true
		case "text":
			asJSON = false
		default:
			http.Error(w, fmt.Sprintf("format=%q: want json or text", f), http.StatusBadRequest)
			return
		}
		d := s.Decisions()
		kept := d.Decisions[:0]
		for _, a := range d.Decisions {
			if ns := q.Get("namespace"); ns != "" && a.Namespace != ns {
				continue
			}
			if so := q.Get("scaledobject"); so != "" && a.ScaledObject != so {
				continue
			}
			kept = append(kept, a)
		}
		d.Decisions = kept
		if asJSON {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(d)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = d.WriteText(w)
	})
}

// WriteText writes d as a table, one line per trigger, with why each answer is what it is.
func (d Decisions) WriteText(w io.Writer) error {
	var b strings.Builder
	if d.At.IsZero() {
		b.WriteString("no planning pass yet\n")
	} else {
		fmt.Fprintf(&b, "pass at %s (%s ago), %d triggers\n", d.At.UTC().Format(time.RFC3339Nano), seconds(d.AgeSeconds), len(d.Decisions))
	}
	if d.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", d.Error)
	}
	if len(d.Decisions) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tSCALEDOBJECT\tTARGET\tQUEUE\tANSWER\tLIMIT\tNEED\tCURRENT\tREADY\tPENDING\tFIT\tSHARE\tBUSY\tMESSAGES\tREAD\tWHY")
		for _, a := range d.Decisions {
			answer, need, why := fmt.Sprint(a.Replicas), fmt.Sprint(a.Need), a.Explain
			if a.Error != "" {
				answer, need, why = "-", "-", a.Error
			}
			busy := fmt.Sprint(a.Busy)
			switch {
			case a.Error != "":
				busy = "-"
			case a.BusyUnknown != "" && !a.busySkipped:
				busy = "?"
			case a.BusyUnknown != "":
				busy = "-" // not read: no scale-down pending
			}
			q := a.Queue
			if q == "" {
				q = "-"
			}
			read := "-"
			if a.SnapshotAgeSeconds > 0 {
				read = seconds(a.SnapshotAgeSeconds).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d+%d\t%s\t%s\n",
				a.Namespace, a.ScaledObject, a.Target, q, answer, a.Limit, need, a.Current, a.Ready,
				a.Pending, a.Fit, a.Share, busy, a.MessagesReady, a.MessagesUnacked, read, why)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		b.WriteString("\nMESSAGES is ready+unacked; BUSY is - when not read (no scale-down pending), ? when unknown.\n")
		seen := map[string]bool{}
		for _, a := range d.Decisions {
			id := a.Namespace + "/" + a.ScaledObject
			if len(a.HPA) == 0 || seen[id] {
				continue
			}
			if len(seen) == 0 {
				b.WriteString("\nWhere the HPA will not run the answer as it is:\n")
			}
			seen[id] = true
			for _, w := range a.HPA {
				fmt.Fprintf(&b, "  %s: %s\n", id, w)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// seconds is s seconds as a duration, to the millisecond.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}
