package server

import (
	"fmt"
	"hash/maphash"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// encodedMsg is a message already encoded, in pieces that concatenate to
// its wire form (protobuf merges repeated fields across pieces). Pieces may
// be shared between streams: gRPC writes them out without copying, so a
// thousand proxies sent the same cluster list hold one copy of its bytes
// while their responses wait for flow control.
type encodedMsg struct{ parts [][]byte }

// codec is gRPC's proto codec with three changes for xDS:
//   - encodedMsgs are sent as they are;
//   - incoming messages are read into buffers from the server's pool
//     (gRPC's default pool hands a 60 KB message a 1 MB buffer and clears it);
//   - a SotW request naming the same resources as the stream's last one is
//     not turned into strings (see sotwRequest).
type codec struct {
	encoding.CodecV2
	pool mem.BufferPool
}

func newCodec(pool mem.BufferPool) codec {
	return codec{CodecV2: encoding.GetCodecV2(grpcproto.Name), pool: pool}
}

// Marshal encodes v; an encodedMsg's pieces are handed over unchanged.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedMsg); ok {
		out := make(mem.BufferSlice, 0, len(m.parts))
		for _, p := range m.parts {
			if len(p) > 0 {
				out = append(out, mem.SliceBuffer(p))
			}
		}
		return out, nil
	}
	return c.CodecV2.Marshal(v)
}

// Unmarshal decodes data into v.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	b := buf.ReadOnlyData()
	switch m := v.(type) {
	case *sotwRequest:
		return m.unmarshal(b)
	case *deltaRequest:
		return m.unmarshal(b)
	case protoadapt.MessageV2:
		return proto.Unmarshal(b, m)
	case protoadapt.MessageV1:
		return proto.Unmarshal(b, protoadapt.MessageV2Of(m))
	}
	return fmt.Errorf("cannot decode into %T, want a proto message", v)
}

// resourceNamesField is DiscoveryRequest.resource_names, and namesTag its
// tag byte.
var (
	resourceNamesField = (&discoveryv3.DiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("resource_names").Number()
	namesTag           = byte(protowire.EncodeTag(resourceNamesField, protowire.BytesType))
)

// sotwRequest is a DiscoveryRequest whose resource names are decoded
// lazily. An Envoy SotW request repeats every name it subscribes to (an ACK
// of EDS names all 1000 clusters). When their encoded bytes hash to what the
// stream's last request of the type carried, or the names hash to the set
// the stream has, that set is used and no string is made.
type sotwRequest struct {
	req      discoveryv3.DiscoveryRequest // without resource_names
	seed     maphash.Seed                 // the interner's
	known    func(typeURL string) (raw uint64, set *nameSet)
	interned func(setKey) *nameSet // the interner's lookup

	raw   uint64   // hash of the encoded resource_names fields, in order
	set   *nameSet // the known set, when the names are the same
	names []string // otherwise, the names
}

// GetNode returns the request's node (RequireIdentity checks it).
func (r *sotwRequest) GetNode() *corev3.Node { return r.req.GetNode() }

func (r *sotwRequest) unmarshal(b []byte) error {
	var raw maphash.Hash
	raw.SetSeed(r.seed)
	n := 0
	span, other := -1, -1 // starts of the runs of names and of other fields
	// The other fields are decoded run by run, in place.
	merge := func(end int) error {
		if other < 0 {
			return nil
		}
		err := proto.UnmarshalOptions{Merge: true}.Unmarshal(b[other:end], &r.req)
		other = -1
		return err
	}
	for i := 0; i < len(b); {
		// Fast path: a name shorter than 128 bytes is its tag byte, a
		// one-byte length and the name.
		names := b[i] == namesTag && i+1 < len(b) && b[i+1] < 0x80 && i+2+int(b[i+1]) <= len(b)
		next := i + 2
		if names {
			next += int(b[i+1])
		} else {
			num, typ, tn := protowire.ConsumeTag(b[i:])
			if tn < 0 {
				return protowire.ParseError(tn)
			}
			m := protowire.ConsumeFieldValue(num, typ, b[i+tn:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			names = num == resourceNamesField && typ == protowire.BytesType
			next = i + tn + m
		}
		switch {
		case names && span < 0:
			if err := merge(i); err != nil {
				return err
			}
			span = i
		case !names && other < 0:
			if span >= 0 {
				raw.Write(b[span:i])
				span = -1
			}
			other = i
		}
		if names {
			n++
		}
		i = next
	}
	if span >= 0 {
		raw.Write(b[span:])
	}
	if err := merge(len(b)); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	r.raw = raw.Sum64()
	lastRaw, set := r.known(r.req.GetTypeUrl())
	if set != nil && lastRaw == r.raw {
		r.set = set
		return nil
	}
	key := setKey{n: n}
	r.eachName(b, func(v []byte) { key.sum += maphash.Bytes(r.seed, v) })
	if set != nil && set.key == key {
		r.set = set
		return nil
	}
	if set := r.interned(key); set != nil {
		r.set = set // another stream subscribes to the same names
		return nil
	}
	r.names = make([]string, 0, n)
	var bad []byte
	r.eachName(b, func(v []byte) {
		if !utf8.Valid(v) && bad == nil {
			bad = v
		}
		r.names = append(r.names, string(v))
	})
	if bad != nil {
		return fmt.Errorf("resource_names: %q is not valid UTF-8", bad)
	}
	return nil
}

// eachName calls fn with each resource name in b, a request checked by
// unmarshal.
func (r *sotwRequest) eachName(b []byte, fn func([]byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if num == resourceNamesField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			fn(v)
		}
		b = b[n+m:]
	}
}

// subscribeField is DeltaDiscoveryRequest.resource_names_subscribe.
var subscribeField = (&discoveryv3.DeltaDiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("resource_names_subscribe").Number()

// deltaRequest is a DeltaDiscoveryRequest whose subscribed names are
// looked up among the interned sets before any string is made: a sidecar's
// first EDS request names every cluster, as a thousand others did before.
type deltaRequest struct {
	req      discoveryv3.DeltaDiscoveryRequest // subscribe names only when set is nil
	seed     maphash.Seed
	interned func(setKey) *nameSet

	set *nameSet // the subscribed names, when interned already
}

// GetNode returns the request's node (RequireIdentity checks it).
func (r *deltaRequest) GetNode() *corev3.Node { return r.req.GetNode() }

func (r *deltaRequest) unmarshal(b []byte) error {
	var rest []byte
	var key setKey
	for in := b; len(in) > 0; {
		num, typ, n := protowire.ConsumeTag(in)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, in[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if num == subscribeField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(in[n:])
			key.sum += maphash.Bytes(r.seed, v)
			key.n++
		} else {
			rest = append(rest, in[:n+m]...)
		}
		in = in[n+m:]
	}
	if key.n > 0 {
		if r.set = r.interned(key); r.set != nil {
			return proto.Unmarshal(rest, &r.req)
		}
	}
	return proto.Unmarshal(b, &r.req)
}
