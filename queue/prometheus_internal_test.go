package queue

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseQueueMetrics(t *testing.T) {
	at := time.Unix(1700000000, 0)
	exposition := strings.Join([]string{
		`# TYPE rabbitmq_detailed_queue_messages_ready gauge`,
		`# HELP rabbitmq_detailed_queue_messages_ready Messages ready to be delivered to consumers`,
		`rabbitmq_detailed_queue_messages_ready{vhost="/",queue="jobs"} 3`,
		`rabbitmq_detailed_queue_messages_unacked{vhost="/",queue="jobs"} 2`,
		// RabbitMQ 3.10 writes names verbatim.
		`rabbitmq_detailed_queue_messages_ready{vhost="/",queue="odd "name" \ here"} 4`,
		`rabbitmq_detailed_queue_messages_unacked{vhost="/",queue="odd "name" \ here"} 0`,
		// The format proper escapes them.
		`rabbitmq_detailed_queue_messages_ready{vhost="prod",queue="say \"hi\" \\ now"} 5`,
		`rabbitmq_detailed_queue_messages_unacked{vhost="prod",queue="say \"hi\" \\ now"} 1 1700000000000`,
		`rabbitmq_detailed_queue_messages_ready{queue="x}y",vhost="prod"} 6`,
		`rabbitmq_detailed_queue_messages_unacked{queue="x}y",vhost="prod"} 0`,
		// Only one of the two: unknown, left out.
		`rabbitmq_detailed_queue_messages_ready{vhost="/",queue="half"} 9`,
		// A raw broker's queues b\c and b\\c: the second line also reads, escaped, as b\c,
		// which is then unknown; b\\c is read (raw).
		`rabbitmq_detailed_queue_messages_ready{vhost="raw",queue="b\c"} 1`,
		`rabbitmq_detailed_queue_messages_unacked{vhost="raw",queue="b\c"} 0`,
		`rabbitmq_detailed_queue_messages_ready{vhost="raw",queue="b\\c"} 2`,
		`rabbitmq_detailed_queue_messages_unacked{vhost="raw",queue="b\\c"} 0`,
		// Other metrics of the family, and labels without a queue.
		`rabbitmq_detailed_queue_messages{vhost="/",queue="jobs"} 5`,
		`rabbitmq_detailed_queue_process_reductions_total{vhost="/",queue="jobs"} 8910`,
		`rabbitmq_detailed_queue_messages_ready{vhost="/"} 1`,
		`rabbitmq_detailed_queue_messages_unacked{vhost="/"} 1`,
	}, "\n")
	got, err := parseQueueMetrics(strings.NewReader(exposition), at)
	if err != nil {
		t.Fatal(err)
	}
	want := map[qkey]queueStat{
		{"/", "jobs"}:              {ready: 3, unacked: 2, at: at},
		{"/", `odd "name" \ here`}: {ready: 4, unacked: 0, at: at},
		{"prod", `say "hi" \ now`}: {ready: 5, unacked: 1, at: at},
		{"prod", "x}y"}:            {ready: 6, unacked: 0, at: at},
		{"raw", `b\\c`}:            {ready: 2, unacked: 0, at: at},
		// The other reading of lines with a backslash: names no queue asks about, unless
		// they are the queue's own (a raw broker's `say \"hi\" \\ now`).
		{"prod", `say \"hi\" \\ now`}: {ready: 5, unacked: 1, at: at},
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%v: got %+v (present %v), want %+v", k, g, ok, w)
		}
	}
	for _, k := range []qkey{{"/", "half"}, {"raw", `b\c`}, {"/", ""}} {
		if g, ok := got[k]; ok {
			t.Errorf("%v: got %+v, want it unknown (absent)", k, g)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d queues %v, want %d", len(got), got, len(want))
	}
}

func TestParseQueueMetricsRejectsBadValues(t *testing.T) {
	for _, v := range []string{"-1", "1.5", "NaN", "+Inf", "x", ""} {
		line := `rabbitmq_detailed_queue_messages_ready{vhost="/",queue="jobs"} ` + v
		_, err := parseQueueMetrics(strings.NewReader(line), time.Time{})
		if err == nil || !strings.Contains(err.Error(), `queue="jobs"`) {
			t.Errorf("value %q: got %v, want an error quoting the line", v, err)
		}
	}
}

// FuzzParseQueueMetrics: any input parses or fails without panicking, and a queue written
// either way, escaped as the format says or raw as RabbitMQ 3.10 does, is read under its
// own name with its counts.
func FuzzParseQueueMetrics(f *testing.F) {
	f.Add("/", "jobs", uint32(3), uint32(2))
	f.Add("prod", `say "hi" \ now`, uint32(0), uint32(7))
	f.Add(`v",queue="x`, `b\\c`, uint32(1), uint32(1))
	f.Fuzz(func(t *testing.T, vhost, name string, ready, unacked uint32) {
		escape := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
		forms := map[string][2]string{"escaped": {escape.Replace(vhost), escape.Replace(name)}}
		// Raw, a line feed would end the line, a carriage return before it be dropped, and a
		// vhost holding `",queue="` not be told apart (rawLabels).
		if !strings.ContainsAny(vhost+name, "\n\r") && !strings.Contains(vhost, `",queue="`) {
			forms["raw"] = [2]string{vhost, name}
		}
		for form, l := range forms {
			labels := `{vhost="` + l[0] + `",queue="` + l[1] + `"} `
			text := metricReady + labels + strconv.FormatUint(uint64(ready), 10) + "\n" +
				metricUnacked + labels + strconv.FormatUint(uint64(unacked), 10) + "\n"
			got, err := parseQueueMetrics(strings.NewReader(text), time.Time{})
			if err != nil {
				t.Fatalf("%s %q: %v", form, text, err)
			}
			if st, ok := got[qkey{vhost, name}]; !ok || st.ready != int64(ready) || st.unacked != int64(unacked) {
				t.Errorf("%s %q: got %+v (present %v), want ready %d unacked %d", form, text, st, ok, ready, unacked)
			}
		}
		_, _ = parseQueueMetrics(strings.NewReader(vhost+"\n"+name), time.Time{})
		_, _ = parseQueueMetrics(strings.NewReader(metricReady+name), time.Time{})
	})
}
