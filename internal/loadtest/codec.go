package loadtest

import (
	"fmt"
	"math/bits"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// clientCodec is gRPC's proto codec with buffers in every power of two,
// kept across garbage collections (see keepPool). gRPC's default pool
// jumps from 32 KB to 1 MB and clears what it hands out, so each 60 KB SotW
// ACK (every EDS name) would clear 1 MB: the load client, which shares the
// cores with the server, must not spend them so.
type clientCodec struct{ pool mem.BufferPool }

func newClientCodec() clientCodec { return clientCodec{pool: newKeepPool(8, 24, keepBytes)} }

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

func (c clientCodec) Unmarshal(data mem.BufferSlice, v any) (err error) {
	switch r := v.(type) {
	case *sotwResponse:
		r.release, err = c.pooled(data, func(b []byte) error {
			d, err := decodeSotWResponse(b)
			if err == nil {
				*r = *d
			}
			return err
		})
		return err
	case *deltaResponse:
		r.release, err = c.pooled(data, func(b []byte) error {
			d, err := decodeDeltaResponse(b)
			if err == nil {
				*r = *d
			}
			return err
		})
		return err
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("cannot decode into %T", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// pooled copies data into a buffer of the pool and decodes it there with
// decode, for a response that keeps sub-slices of its bytes; release hands
// the buffer back once the caller is done with them. A fresh buffer per
// response (up to MBs for a full CDS) costs page faults and clearing,
// which made copying in the client's largest cost.
func (c clientCodec) pooled(data mem.BufferSlice, decode func([]byte) error) (release func(), err error) {
	buf := c.pool.Get(data.Len())
	data.CopyTo(*buf)
	if err := decode(*buf); err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	return func() { c.pool.Put(buf) }, nil
}

// keepPool is a buffer pool with a tier per power of two from 1<<minExp
// to 1<<maxExp bytes (larger sizes are not pooled), whose free buffers
// stay in it across garbage collections, up to keep bytes (and between 16
// and 65536 buffers) per tier. The client uses it for its messages and,
// through gRPC, for the transport's frames. A sync.Pool (as gRPC's own
// pools use) drops them at the second collection: the client collects
// before every change, so after a run of endpoint changes the first new
// service found no buffers for the ~400 MB of frames that pile up while
// its SotW responses arrive, faulted in fresh memory, and took 1.3-1.7 s
// instead of 0.7-0.9 s at 1000 x 1000, with twice the client CPU of the
// next ones. Buffers are handed out as they were left (nothing here needs
// them cleared: every user writes before it reads).
type keepPool struct {
	minExp uint
	tiers  []chan *[]byte
}

// keepBytes is how much each tier of the client's pool keeps: while a new
// service's SotW responses arrive at 1000 x 1000, the frames waiting in
// the streams' receive buffers and the responses being read come to about
// 400 MB.
const keepBytes = 512 << 20

func newKeepPool(minExp, maxExp uint, keep int) *keepPool {
	p := &keepPool{minExp: minExp}
	for e := minExp; e <= maxExp; e++ {
		p.tiers = append(p.tiers, make(chan *[]byte, min(max(16, keep>>e), 1<<16)))
	}
	return p
}

// tier returns the index of the smallest tier that holds size bytes, or -1.
func (p *keepPool) tier(size int) int {
	e := uint(bits.Len(uint(max(size, 1) - 1)))
	if e < p.minExp {
		return 0
	}
	if i := int(e - p.minExp); i < len(p.tiers) {
		return i
	}
	return -1
}

func (p *keepPool) Get(size int) *[]byte {
	i := p.tier(size)
	if i < 0 {
		b := make([]byte, size)
		return &b
	}
	select {
	case b := <-p.tiers[i]:
		*b = (*b)[:size]
		return b
	default:
		b := make([]byte, size, 1<<(p.minExp+uint(i)))
		return &b
	}
}

func (p *keepPool) Put(b *[]byte) {
	i := p.tier(cap(*b))
	if i < 0 || cap(*b) != 1<<(p.minExp+uint(i)) {
		return // not one of ours
	}
	select {
	case p.tiers[i] <- b:
	default:
	}
}
