package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/server"
)

// recordingConn keeps every byte the server sent to the client.
type recordingConn struct {
	net.Conn
	mu   sync.Mutex
	read bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// serverPings makes calls GetMetrics calls, one at a time, over one connection to a server
// with opts, and counts the PING frames the server started (acknowledgements of the
// client's own pings are not counted).
func serverPings(t *testing.T, opts func(*server.Server) []grpc.ServerOption, calls int) int {
	t.Helper()
	srv, refs := benchServer(t, 1)
	addr := serveBench(t, srv, opts(srv))
	var rc *recordingConn
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			rc = &recordingConn{Conn: c}
			return rc, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	client := pb.NewExternalScalerClient(conn)
	for range calls {
		if _, err := client.GetMetrics(t.Context(), refs[0]); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	rc.mu.Lock()
	defer rc.mu.Unlock()
	fr := http2.NewFramer(nil, &rc.read)
	pings, frames := 0, 0
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d from the server: %v", frames, err)
		}
		frames++
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pings++
		}
	}
	if frames < calls {
		t.Fatalf("read %d frames from the server for %d calls", frames, calls)
	}
	return pings
}

// The server's flow-control windows are fixed: it sends no PING to estimate the link,
// where gRPC's defaults send one for nearly every call made one at a time.
func TestGRPCOptionsSendNoPings(t *testing.T) {
	const calls = 20
	if got := serverPings(t, (*server.Server).GRPCOptions, calls); got != 0 {
		t.Errorf("server options: %d server PINGs in %d calls, want 0", got, calls)
	}
	// The control: the same count over gRPC's default windows sees the pings, so a zero above
	// is the options' doing, not a blind count.
	got := serverPings(t, func(*server.Server) []grpc.ServerOption { return nil }, calls)
	if got == 0 {
		t.Errorf("gRPC defaults: 0 server PINGs in %d calls; the count cannot see them", calls)
	}
	t.Logf("gRPC defaults: %d server PINGs in %d calls", got, calls)
}
