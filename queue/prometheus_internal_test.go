package queue

import (
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
	}
	if len(got) != len(want) {
		t.Errorf("got %d queues %v, want %d", len(got), got, len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%v: got %+v (present %v), want %+v", k, g, ok, w)
		}
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
