package loadtest

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// clientCodec is gRPC's proto codec with buffers in every power of two.
// gRPC's default pool jumps from 32 KB to 1 MB and clears what it hands
// out, so each 60 KB SotW ACK (every EDS name) would clear 1 MB: the load
// client, which shares the cores with the server, must not spend them so.
type clientCodec struct{ pool mem.BufferPool }

func newClientCodec() clientCodec {
	pool, err := mem.NewBinaryTieredBufferPool(8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
	if err != nil {
		panic(err) // the exponents are constants
	}
	return clientCodec{pool: pool}
}

func (c clientCodec) Name() string { return "proto" }

func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*sotwACK); ok {
		buf := c.pool.Get(r.size())
		*buf = r.appendTo((*buf)[:0])
		return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("cannot encode %T", v)
	}
	size := proto.Size(m)
	buf := c.pool.Get(size)
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c clientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*sotwResponse); ok {
		// The response keeps sub-slices of its bytes, in a buffer of the
		// pool that the caller hands back (release) once done with them:
		// a fresh buffer per response (up to MBs for a full CDS) costs
		// page faults and clearing, which made copying in the client's
		// largest cost.
		buf := c.pool.Get(data.Len())
		data.CopyTo(*buf)
		d, err := decodeSotWResponse(*buf)
		if err != nil {
			c.pool.Put(buf)
			return err
		}
		*r = *d
		r.release = func() { c.pool.Put(buf) }
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("cannot decode into %T", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
