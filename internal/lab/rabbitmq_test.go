package lab_test

import (
	"net"
	"testing"

	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// TestRabbitMQ starts a real broker, declares and fills a queue through the admin helper,
// survives a crash and a restart on the same ports and data, and stops by PID.
func TestRabbitMQ(t *testing.T) {
	r := labtest.RabbitMQ(t)
	ctx := t.Context()
	a := r.Admin()

	if err := a.AddVHost(ctx, "lab"); err != nil {
		t.Fatalf("add vhost: %v", err)
	}
	if err := a.DeclareQueue(ctx, "lab", "work"); err != nil {
		t.Fatalf("declare: %v", err)
	}
	if err := a.DeclareQueues(ctx, "lab", "bulk-1", "bulk-2"); err != nil {
		t.Fatalf("declare many: %v", err)
	}
	if err := a.Publish(ctx, "lab", "work", 3); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := a.Publish(ctx, "lab", "missing", 1); err == nil {
		t.Fatalf("publish to a missing queue: got nil error, want not routed")
	}

	r.Kill()
	if c, err := net.Dial("tcp", r.AMQPAddr()); err == nil {
		c.Close()
		t.Fatalf("AMQP port still answers after Kill")
	}
	if err := r.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	// The durable queue survived the crash: publishing to it routes. ("work" had messages
	// published with confirms before the crash; a queue declared a moment before a SIGKILL,
	// such as bulk-2, may not have reached the broker's disk yet, and RabbitMQ is right to
	// lose it.)
	if err := a.Publish(ctx, "lab", "work", 1); err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if c, err := net.Dial("tcp", r.AMQPAddr()); err == nil {
		c.Close()
		t.Fatalf("AMQP port still answers after Stop")
	}
}
