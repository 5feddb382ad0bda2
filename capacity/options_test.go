package capacity

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

func TestNewRejectsBadOptions(t *testing.T) {
	client := fake.NewClientset() // only to have a non-nil client; nothing is watched
	tests := []struct {
		name   string
		opts   Options
		wantIn string
	}{
		{name: "no client", opts: Options{}, wantIn: "Client is nil"},
		{name: "negative metrics interval", opts: Options{Client: client, MetricsInterval: -time.Second}, wantIn: "-1s"},
		{name: "negative CRD interval", opts: Options{Client: client, CRDInterval: -time.Second}, wantIn: "-1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if err == nil || c != nil {
				t.Fatalf("New = %v, %v; want an error", c, err)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not name %q", err, tc.wantIn)
			}
		})
	}
	c, err := New(Options{Client: client})
	if err != nil {
		t.Fatalf("New with a client: %v", err)
	}
	if c.Synced() {
		t.Error("Synced = true before Start")
	}
	c.Close() // closing a cluster that never started is fine
}
