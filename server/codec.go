package server

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// encodedMsg is a message already encoded, in pieces that concatenate to
// its wire form (protobuf merges repeated fields across pieces). Pieces may
// be shared between streams: gRPC writes them out without copying, so a
// thousand proxies sent the same cluster list hold one copy of its bytes
// while their responses wait for flow control.
type encodedMsg struct{ parts [][]byte }

// codec is gRPC's proto codec that also sends encodedMsgs as they are.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(proto.Name)} }

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
