package server

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/headroom-autoscaler/headroom/proto"
)

// maxMemoRequests bounds each of requestCodec's memos; a memo is emptied when full. KEDA
// sends one GetMetrics request and one ScaledObjectRef per ScaledObject, with the trigger's
// metadata map written in Go's map order, which varies between calls: one ScaledObject
// arrives as a few byte sequences (a rotation of its keys, at most one per key), each
// remembered on its own. An entry of a three-key request (95 bytes) takes 735 bytes of heap
// (BenchmarkRequestCodec/memo-entry): 10,000 entries, a fleet of one to two thousand
// ScaledObjects, about 7 MB.
const maxMemoRequests = 10000

// requestCodec is gRPC's protobuf codec with a memo of the requests KEDA repeats. KEDA
// polls each ScaledObject with the same request at every poll (its name, namespace and
// trigger metadata); decoding one through the protobuf runtime rebuilds the metadata map by
// reflection, about 25 allocations of each call. The memo maps a request's bytes
// to its decoded form, and a call whose bytes were seen before gets the decoded fields
// without decoding (the nested ScaledObjectRef and its metadata map are shared between
// calls: the handlers only read requests). Only messages without unknown fields are kept,
// so a memoised request is exactly what decoding it again would give the handlers. Every
// other message goes through gRPC's codec unchanged.
type requestCodec struct {
	base encoding.CodecV2

	mu   sync.RWMutex
	gets map[string]*pb.GetMetricsRequest
	refs map[string]*pb.ScaledObjectRef
}

func newRequestCodec() *requestCodec {
	return &requestCodec{
		base: encoding.GetCodecV2("proto"),
		gets: make(map[string]*pb.GetMetricsRequest),
		refs: make(map[string]*pb.ScaledObjectRef),
	}
}

// Name is the codec's content subtype: it stands in for gRPC's "proto".
func (c *requestCodec) Name() string { return c.base.Name() }

// Marshal is gRPC's: answers change with every decision.
func (c *requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal fills v from the memo when data was seen before, else decodes it.
func (c *requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *pb.GetMetricsRequest:
		return unmarshalMemo(c, c.gets, data, m, copyGetMetricsRequest, func(m *pb.GetMetricsRequest) bool {
			return clean(m) && clean(m.ScaledObjectRef)
		})
	case *pb.ScaledObjectRef:
		return unmarshalMemo(c, c.refs, data, m, copyScaledObjectRef, func(m *pb.ScaledObjectRef) bool { return clean(m) })
	}
	return c.base.Unmarshal(data, v)
}

// copyGetMetricsRequest and copyScaledObjectRef copy every field of a request, shallowly:
// the nested message and the map are shared. TestRequestCodecCopiesEveryField fails when
// the proto gains a field they do not copy.
func copyGetMetricsRequest(dst, src *pb.GetMetricsRequest) {
	dst.ScaledObjectRef, dst.MetricName = src.ScaledObjectRef, src.MetricName
}

func copyScaledObjectRef(dst, src *pb.ScaledObjectRef) {
	dst.Name, dst.Namespace, dst.ScalerMetadata = src.Name, src.Namespace, src.ScalerMetadata
}

// unmarshalMemo fills m from memo when data was seen before; else it decodes data into m and,
// when keep says so, remembers a copy of it under data's bytes (emptying the memo first when
// it is full).
func unmarshalMemo[T any, M interface {
	*T
	proto.Message
}](c *requestCodec, memo map[string]M, data mem.BufferSlice, m M, copyFields func(dst, src M), keep func(M) bool) error {
	b := contiguous(data)
	c.mu.RLock()
	seen, ok := memo[string(b)]
	c.mu.RUnlock()
	if ok {
		copyFields(m, seen)
		return nil
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return err
	}
	if keep(m) {
		kept := M(new(T))
		copyFields(kept, m)
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(memo) >= maxMemoRequests {
			clear(memo)
		}
		memo[string(b)] = kept
	}
	return nil
}

// clean reports whether m (nil counts) carries no fields this server's proto does not know.
func clean(m proto.Message) bool {
	r := m.ProtoReflect()
	return !r.IsValid() || len(r.GetUnknown()) == 0
}

// contiguous is data as one byte slice, without a copy when it is one buffer (a KEDA request
// always is: a few hundred bytes in one frame). The bytes are valid until gRPC frees data,
// after Unmarshal returns.
func contiguous(data mem.BufferSlice) []byte {
	if len(data) == 1 {
		return data[0].ReadOnlyData()
	}
	return data.Materialize()
}

// memoLen is the number of requests in the memos, for tests.
func (c *requestCodec) memoLen() (gets, refs int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.gets), len(c.refs)
}
