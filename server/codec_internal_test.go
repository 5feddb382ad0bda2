package server

import (
	"runtime"
	"strconv"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/headroom-autoscaler/headroom/proto"
)

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleRequest(name string) *pb.GetMetricsRequest {
	return &pb.GetMetricsRequest{
		ScaledObjectRef: &pb.ScaledObjectRef{Name: name, Namespace: "ns", ScalerMetadata: map[string]string{
			"broker": "main", "queue": "tasks-" + name, "messagesPerReplica": "2",
		}},
		MetricName: "s0-headroom",
	}
}

// A request decoded from the memo is the request decoding it would give, on the first call
// and on every repeat, and a repeat adds no memo entry.
func TestRequestCodecRepeats(t *testing.T) {
	c := newRequestCodec()
	want := sampleRequest("a")
	b := marshal(t, want)
	for i := range 3 {
		got := new(pb.GetMetricsRequest)
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("call %d: decoded %v, want %v", i, got, want)
		}
	}
	other := sampleRequest("b")
	got := new(pb.GetMetricsRequest)
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, other))}, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, other) {
		t.Fatalf("second request decoded as %v, want %v", got, other)
	}
	if gets, refs := c.memoLen(); gets != 2 || refs != 0 {
		t.Errorf("memo holds %d GetMetrics requests and %d refs, want 2 and 0", gets, refs)
	}

	// The bare ScaledObjectRef of IsActive, GetMetricSpec and StreamIsActive, split over two
	// buffers as a request can arrive.
	ref := want.ScaledObjectRef
	rb := marshal(t, ref)
	for i := range 2 {
		got := new(pb.ScaledObjectRef)
		split := mem.BufferSlice{mem.SliceBuffer(rb[:5]), mem.SliceBuffer(rb[5:])}
		if err := c.Unmarshal(split, got); err != nil {
			t.Fatalf("ref call %d: %v", i, err)
		}
		if !proto.Equal(got, ref) {
			t.Fatalf("ref call %d: decoded %v, want %v", i, got, ref)
		}
	}
	if _, refs := c.memoLen(); refs != 1 {
		t.Errorf("memo holds %d refs, want 1", refs)
	}
}

// KEDA's client writes the metadata map in Go's map order, which changes from call to call:
// the same ScaledObject arrives as differently ordered bytes, each decoded to the same request.
func TestRequestCodecMapOrder(t *testing.T) {
	entry := func(k, v string) []byte {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		return protowire.AppendString(e, v)
	}
	ref := func(entries ...[]byte) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, "loader")
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, "ns")
		for _, e := range entries {
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendBytes(b, e)
		}
		return b
	}
	a, q := entry("broker", "main"), entry("queue", "tasks")
	want := &pb.ScaledObjectRef{Name: "loader", Namespace: "ns", ScalerMetadata: map[string]string{"broker": "main", "queue": "tasks"}}
	c := newRequestCodec()
	for _, b := range [][]byte{ref(a, q), ref(q, a), ref(a, q), ref(q, a)} {
		got := new(pb.ScaledObjectRef)
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded %v, want %v", got, want)
		}
	}
	if _, refs := c.memoLen(); refs != 2 {
		t.Errorf("memo holds %d refs for two orders, want 2", refs)
	}
}

// A request with fields this server does not know is decoded, unknown fields kept, and never
// memoised; bytes that are not a request give the decoding error and leave no entry.
func TestRequestCodecUnknownAndBad(t *testing.T) {
	c := newRequestCodec()
	b := marshal(t, sampleRequest("a"))
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	for range 2 {
		got := new(pb.GetMetricsRequest)
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
			t.Fatal(err)
		}
		if got.GetScaledObjectRef().GetName() != "a" || len(got.ProtoReflect().GetUnknown()) == 0 {
			t.Fatalf("decoded %v with unknown fields %x", got, got.ProtoReflect().GetUnknown())
		}
	}
	bad := []byte{0x0a, 0x7f, 0x01} // field 1, length 127, one byte of it
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, new(pb.GetMetricsRequest)); err == nil {
		t.Error("truncated request: no error")
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, new(pb.ScaledObjectRef)); err == nil {
		t.Error("truncated ref: no error")
	}
	if gets, refs := c.memoLen(); gets != 0 || refs != 0 {
		t.Errorf("memo holds %d requests and %d refs, want none", gets, refs)
	}
	// Any other message is gRPC's codec's business.
	var resp pb.GetMetricsResponse
	data, err := c.Marshal(&pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{MetricName: "m", MetricValueFloat: 2.5}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Unmarshal(data, &resp); err != nil || resp.MetricValues[0].MetricValueFloat != 2.5 {
		t.Errorf("response round trip: %v, %v", &resp, err)
	}
}

// Distinct requests beyond the bound empty the memo rather than grow it: a client sending a
// new request at every call costs a decode each, never unbounded memory.
func TestRequestCodecBounded(t *testing.T) {
	c := newRequestCodec()
	for i := range maxMemoRequests + 10 {
		got := new(pb.GetMetricsRequest)
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, sampleRequest(strconv.Itoa(i))))}, got); err != nil {
			t.Fatal(err)
		}
		if got.ScaledObjectRef.Name != strconv.Itoa(i) {
			t.Fatalf("request %d decoded as %v", i, got)
		}
	}
	if gets, _ := c.memoLen(); gets != 10 {
		t.Errorf("memo holds %d requests after %d distinct ones, want 10 (emptied at %d)", gets, maxMemoRequests+10, maxMemoRequests)
	}
}

// The memo copies a request field by field: every field the proto declares, set, must come
// through a hit. A field added to the proto and not to the copy functions fails here.
func TestRequestCodecCopiesEveryField(t *testing.T) {
	for _, m := range []proto.Message{new(pb.GetMetricsRequest), new(pb.ScaledObjectRef)} {
		populate(t, m.ProtoReflect())
		b := marshal(t, m)
		c := newRequestCodec()
		for call := range 2 { // a miss, then a hit
			got := m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, m) {
				t.Errorf("%T call %d: got %v, want every field of %v", m, call, got, m)
			}
		}
	}
}

// populate sets every field of m to a value that is not its zero.
func populate(t *testing.T, m protoreflect.Message) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			if fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind {
				t.Fatalf("%s: a map of %v to %v; extend populate", fd.FullName(), fd.MapKey().Kind(), fd.MapValue().Kind())
			}
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
		case fd.IsList():
			t.Fatalf("%s: a repeated field; extend populate", fd.FullName())
		case fd.Kind() == protoreflect.MessageKind:
			populate(t, m.Mutable(fd).Message())
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(string(fd.Name())))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.Int64Kind:
			m.Set(fd, protoreflect.ValueOfInt64(7))
		case fd.Kind() == protoreflect.Int32Kind:
			m.Set(fd, protoreflect.ValueOfInt32(7))
		case fd.Kind() == protoreflect.DoubleKind:
			m.Set(fd, protoreflect.ValueOfFloat64(1.5))
		default:
			t.Fatalf("%s: kind %v; extend populate", fd.FullName(), fd.Kind())
		}
	}
}

// BenchmarkRequestCodec decodes one GetMetrics request as the server's codec does: from the
// memo (a repeat) and by the protobuf runtime (gRPC's codec, what a first sight costs). The
// memo-entry sub-benchmark fills a memo with 1,000 distinct three-key requests and reports
// the heap one entry takes.
func BenchmarkRequestCodec(b *testing.B) {
	req := sampleRequest("loader")
	data := mem.BufferSlice{mem.SliceBuffer(marshalB(b, req))}
	b.Run("memo-hit", func(b *testing.B) {
		c := newRequestCodec()
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Unmarshal(data, new(pb.GetMetricsRequest)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		c := newRequestCodec()
		b.ReportAllocs()
		for b.Loop() {
			if err := c.base.Unmarshal(data, new(pb.GetMetricsRequest)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("memo-entry", func(b *testing.B) {
		const n = 1000
		reqs := make([]mem.BufferSlice, n)
		for i := range reqs {
			reqs[i] = mem.BufferSlice{mem.SliceBuffer(marshalB(b, sampleRequest("loader-"+strconv.Itoa(i))))}
		}
		b.Logf("request size %d bytes", reqs[0].Len())
		var heap uint64
		for b.Loop() {
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			c := newRequestCodec()
			for _, r := range reqs {
				if err := c.Unmarshal(r, new(pb.GetMetricsRequest)); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			heap += m1.HeapAlloc - m0.HeapAlloc
			runtime.KeepAlive(c)
		}
		b.ReportMetric(float64(heap)/float64(b.N)/n, "heap-B/entry")
	})
}

func marshalB(b *testing.B, m proto.Message) []byte {
	b.Helper()
	out, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
