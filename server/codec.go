package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// encodedMsg is a message already encoded, in pieces that concatenate to
// its wire form (protobuf merges repeated fields across pieces): head, then
// parts. Pieces may be shared between streams: gRPC writes them out without
// copying, so a thousand proxies sent the same cluster list hold one copy of
// its bytes while their responses wait for flow control. The head is apart
// so that a response's own fields need no new slice of pieces.
type encodedMsg struct {
	head  []byte
	parts [][]byte
}

// codec is gRPC's proto codec with three changes for xDS:
//   - encodedMsgs are sent as they are;
//   - incoming messages are read into buffers from the server's pool
//     (gRPC's default pool hands a 60 KB message a 1 MB buffer and clears it);
//   - a SotW request naming the same resources as the stream's last one is
//     matched against them and not turned into strings (see sotwRequest).
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
		out := make(mem.BufferSlice, 0, 1+len(m.parts))
		if len(m.head) > 0 {
			out = append(out, mem.SliceBuffer(m.head))
		}
		for _, p := range m.parts {
			if len(p) > 0 {
				out = append(out, mem.SliceBuffer(p))
			}
		}
		return out, nil
	}
	return c.CodecV2.Marshal(v)
}

// Unmarshal decodes data into v; a rawMsg keeps data as it is, in the
// pieces it came in.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*rawMsg); ok {
		data.Ref()
		m.data, m.pool = data, c.pool
		return nil
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	b := buf.ReadOnlyData()
	switch m := v.(type) {
	case protoadapt.MessageV2:
		return proto.Unmarshal(b, m)
	case protoadapt.MessageV1:
		return proto.Unmarshal(b, protoadapt.MessageV2Of(m))
	}
	return fmt.Errorf("cannot decode into %T, want a proto message", v)
}

// rawMsg is a message read but not decoded yet: a stream's reading
// goroutine waits in RecvMsg about 2.1 KB deep, 1.7 KB of that gRPC's
// frames, and requests decoded down there (the first carries the node, its
// metadata nested structs) would grow its stack to 8 KB, which it would
// keep while the proxy is connected (see onOwnStack). It hands them on
// undecoded.
//
// A message of more than one HTTP/2 frame comes in several buffers. Joining
// them costs a copy and the clearing of a pooled buffer (a SotW EDS ACK
// naming 1000 clusters is 49 KB, sent by every sidecar after every change),
// so a decoder that can read it where it lies is given the pieces first
// (see piecewise).
type rawMsg struct {
	data mem.BufferSlice // held until decode or free
	pool mem.BufferPool  // to join the pieces in
	// checkNode, when set (by RequireIdentity), vets a request's node.
	checkNode func(*corev3.Node) error
}

// free lets go of the message's bytes.
func (m *rawMsg) free() {
	m.data.Free()
	m.data = nil
}

// piecewise is an xdsRequest that can decode some messages in the pieces
// they came in; for others it returns errWhole, having changed nothing.
type piecewise interface {
	unmarshalPieces(p pieces) error
}

// errWhole is a piecewise decoder's answer for a message it leaves to the
// contiguous decoder.
var errWhole = errors.New("decode the message whole")

// xdsRequest is a SotW or delta request as the codec decodes it.
type xdsRequest interface {
	unmarshal([]byte) error
	GetNode() *corev3.Node
	// keepNodeWire keeps the node as it came (see nodeField).
	keepNodeWire([]byte)
	// nodeNumber is the number of the message's node field.
	nodeNumber() protowire.Number
}

// The node's field: 2 in a DiscoveryRequest (1 is its version_info), 1 in
// a DeltaDiscoveryRequest.
var (
	sotwNodeField  = (&discoveryv3.DiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("node").Number()
	deltaNodeField = (&discoveryv3.DeltaDiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("node").Number()
)

// fieldAt reads the field b starts with: its number, wire type, the length
// of its tag and its whole length; size is negative when b is malformed
// there.
func fieldAt(b []byte) (num protowire.Number, typ protowire.Type, tag, size int) {
	num, typ, tag = protowire.ConsumeTag(b)
	if tag < 0 {
		return 0, 0, 0, -1
	}
	m := protowire.ConsumeFieldValue(num, typ, b[tag:])
	if m < 0 {
		return 0, 0, 0, -1
	}
	return num, typ, tag, tag + m
}

// nodeField returns a copy of the node (field number num) of the encoded
// request b as it came, or nil if b holds the node in more than one field
// (protobuf merges them: only the decoded node, encoded again, is the
// whole node). A connection keeps its node encoded (see conn.node);
// encoding the decoded node again sorted its metadata's maps by
// reflection, for every proxy connecting.
func nodeField(b []byte, num protowire.Number) []byte {
	var node []byte
	found := false
	for len(b) > 0 {
		field, typ, tag, size := fieldAt(b)
		if size < 0 {
			return nil
		}
		if field == num {
			if found || typ != protowire.BytesType {
				return nil
			}
			node, _ = protowire.ConsumeBytes(b[tag:])
			found = true
		}
		b = b[size:]
	}
	return bytes.Clone(node)
}

// withoutNode returns b without its node fields (number num), for a stream
// that has its node already: only a stream's first node counts (it is the
// connection's, and what RequireIdentity vets), so a node a later request
// repeats is not decoded, nor checked. Envoy as Istio sets it up sends the
// node once (set_node_on_first_message_only); a client that repeats it
// made the server decode a sidecar's metadata (a few hundred nested values,
// 5 KB of garbage) again for every request that carried it. b itself is
// returned when it has no node field, or when it is malformed (the decoder
// then says how).
func withoutNode(b []byte, num protowire.Number) []byte {
	var out []byte
	for i := 0; i < len(b); {
		field, typ, _, size := fieldAt(b[i:])
		if size < 0 {
			return b
		}
		switch {
		case field == num && typ == protowire.BytesType:
			if out == nil {
				out = append(make([]byte, 0, len(b)), b[:i]...)
			}
		case out != nil:
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	if out == nil {
		return b
	}
	return out
}

// decode decodes the message into req, frees its bytes and has the node
// vetted. A decoding error is what gRPC would have returned, had it decoded
// the message itself.
func (m *rawMsg) decode(req xdsRequest) error {
	defer m.free()
	err := errWhole
	if p, ok := req.(piecewise); ok && len(m.data) > 1 {
		err = p.unmarshalPieces(pieces(m.data))
	}
	if err == errWhole {
		buf := m.data.MaterializeToBuffer(m.pool)
		b := buf.ReadOnlyData()
		if err = req.unmarshal(b); err == nil && req.GetNode() != nil {
			req.keepNodeWire(nodeField(b, req.nodeNumber()))
		}
		buf.Free()
	}
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	if node := req.GetNode(); node != nil && m.checkNode != nil {
		return m.checkNode(node)
	}
	return nil
}

// resourceNamesField is DiscoveryRequest.resource_names, and namesTag its
// tag byte.
var (
	resourceNamesField = (&discoveryv3.DiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("resource_names").Number()
	namesTag           = byte(protowire.EncodeTag(resourceNamesField, protowire.BytesType))
)

// sotwRequest is a DiscoveryRequest whose resource names are decoded
// lazily. An Envoy SotW request repeats every name it subscribes to (an ACK
// of EDS names all 1000 clusters), almost always the names of the stream's
// last request of the type, in the same order: those bytes are compared in
// one go with the encoding of the set the stream knows, which is then used
// as it is. Names in another order, or a set another stream interned, are
// found by the names' key and confirmed name by name. Only a new set of
// names is turned into strings.
type sotwRequest struct {
	req      discoveryv3.DiscoveryRequest // without resource_names
	seed     maphash.Seed                 // the interner's
	known    map[string]*nameSet          // the stream's last names, by type
	interned func(setKey) *nameSet        // the interner's lookup

	match *nameSet // the known set whose encoding the first names are
	set   *nameSet // the known set, when the names are the same
	names []string // otherwise, the names

	nodeWire []byte // the node as it came, when kept (see nodeField)
	skipNode bool   // the stream has its node: a node here is not decoded (see withoutNode)
}

// GetNode returns the request's node (RequireIdentity checks it).
func (r *sotwRequest) GetNode() *corev3.Node { return r.req.GetNode() }

func (r *sotwRequest) keepNodeWire(b []byte) { r.nodeWire = b }

func (r *sotwRequest) nodeNumber() protowire.Number { return sotwNodeField }

// reset clears r for its next request (known and skipNode are that
// request's to set). A request keeps what decoding made anew (the node,
// the names), never r's own fields.
func (r *sotwRequest) reset() {
	proto.Reset(&r.req)
	r.known, r.match, r.set, r.names, r.nodeWire, r.skipNode = nil, nil, nil, nil, nil, false
}

func (r *sotwRequest) unmarshal(b []byte) error {
	if r.skipNode {
		b = withoutNode(b, sotwNodeField)
	}
	n, err := r.scan(b)
	if err != nil || n == 0 {
		return err
	}
	return r.resolve(b, n)
}

// scan decodes every field but resource_names into req, run by run in
// place, and returns how many names there are. Where the names start, it
// looks for the encoding of a set the stream knows (match), and steps over
// it at once.
func (r *sotwRequest) scan(b []byte) (n int, err error) {
	other := -1 // start of the current run of other fields
	for i := 0; i < len(b); {
		names, next, err := nextField(b, i)
		if err != nil {
			return 0, err
		}
		switch {
		case names:
			if err := r.merge(b, other, i); err != nil {
				return 0, err
			}
			other = -1
			if n == 0 {
				if r.match = r.knownAt(b[i:]); r.match != nil {
					n, i = r.match.len(), i+len(r.match.wire())
					continue
				}
			}
			n++
		case other < 0:
			other = i
		}
		i = next
	}
	return n, r.merge(b, other, len(b))
}

// knownAt returns the set the stream knows whose encoding b starts with.
func (r *sotwRequest) knownAt(b []byte) *nameSet {
	return r.knownBy(func(w []byte) bool { return bytes.HasPrefix(b, w) })
}

// knownBy returns the set the stream knows (none empty) whose encoding
// holds says the message has where its names start.
func (r *sotwRequest) knownBy(holds func(w []byte) bool) *nameSet {
	for _, set := range r.known {
		if set == nil {
			continue
		}
		if w := set.wire(); len(w) > 0 && holds(w) {
			return set
		}
	}
	return nil
}

// nextField reports whether the field at b[i] is a resource name, and
// where the next field starts.
func nextField(b []byte, i int) (names bool, next int, err error) {
	// Fast path: a name shorter than 128 bytes is its tag byte, a one-byte
	// length and the name.
	if b[i] == namesTag && i+1 < len(b) && b[i+1] < 0x80 && i+2+int(b[i+1]) <= len(b) {
		return true, i + 2 + int(b[i+1]), nil
	}
	num, typ, tn := protowire.ConsumeTag(b[i:])
	if tn < 0 {
		return false, 0, protowire.ParseError(tn)
	}
	m := protowire.ConsumeFieldValue(num, typ, b[i+tn:])
	if m < 0 {
		return false, 0, protowire.ParseError(m)
	}
	return num == resourceNamesField && typ == protowire.BytesType, i + tn + m, nil
}

// merge decodes the run of other fields b[from:to] into req (none when
// from is negative).
func (r *sotwRequest) merge(b []byte, from, to int) error {
	if from < 0 {
		return nil
	}
	return proto.UnmarshalOptions{Merge: true}.Unmarshal(b[from:to], &r.req)
}

// unmarshalPieces decodes, from the pieces it came in, the common ACK: a
// request naming exactly the stream's last names of its type. The names
// are compared with that set's encoding where they lie; only the other
// fields (a hundred bytes) are copied out to be decoded. Anything else is
// errWhole, r unchanged.
func (r *sotwRequest) unmarshalPieces(p pieces) error {
	var match *nameSet
	rest := make([]byte, 0, 128) // the other fields, in order: an ACK's are under 128 bytes
	for i, end := 0, p.len(); i < end; {
		num, typ, next, ok := p.field(i)
		if !ok {
			return errWhole // malformed: the contiguous decoder says how
		}
		if num == sotwNodeField && r.skipNode {
			return errWhole // rare: withoutNode takes it out of the whole message
		}
		if num == resourceNamesField && typ == protowire.BytesType {
			if match != nil {
				return errWhole // more names than the set's
			}
			if match = r.knownIn(p, i); match == nil {
				return errWhole
			}
			i += len(match.wire())
			continue
		}
		rest = p.appendTo(rest, i, next)
		i = next
	}
	if err := proto.Unmarshal(rest, &r.req); err != nil || match != nil && match != r.known[r.req.GetTypeUrl()] {
		proto.Reset(&r.req)
		return errWhole
	}
	r.match, r.set = match, match
	return nil
}

// knownIn is knownAt for a message in pieces: the set the stream knows
// whose encoding the message holds at i.
func (r *sotwRequest) knownIn(p pieces, i int) *nameSet {
	return r.knownBy(func(w []byte) bool { return p.equalAt(i, w) })
}

// pieces is a message in the buffers it came in, read where it lies.
type pieces mem.BufferSlice

func (p pieces) len() int { return mem.BufferSlice(p).Len() }

// at returns the bytes from offset i to the end of the piece holding it.
func (p pieces) at(i int) (b []byte, k int) {
	for k = range p {
		b = p[k].ReadOnlyData()
		if i < len(b) {
			return b[i:], k
		}
		i -= len(b)
	}
	return nil, len(p)
}

// appendTo appends the message's bytes [from, to) to dst.
func (p pieces) appendTo(dst []byte, from, to int) []byte {
	b, k := p.at(from)
	for n := to - from; n > 0; {
		m := min(n, len(b))
		dst = append(dst, b[:m]...)
		n -= m
		if k++; k < len(p) {
			b = p[k].ReadOnlyData()
		}
	}
	return dst
}

// equalAt reports whether the message holds w at offset i.
func (p pieces) equalAt(i int, w []byte) bool {
	if i+len(w) > p.len() {
		return false
	}
	b, k := p.at(i)
	for len(w) > 0 {
		m := min(len(w), len(b))
		if !bytes.Equal(b[:m], w[:m]) {
			return false
		}
		w = w[m:]
		if k++; k < len(p) {
			b = p[k].ReadOnlyData()
		}
	}
	return true
}

// field reads the tag of the field at offset i and returns where the next
// field starts; ok is false for a malformed field or a group (left to the
// contiguous decoder).
func (p pieces) field(i int) (num protowire.Number, typ protowire.Type, next int, ok bool) {
	var head [2 * binary.MaxVarintLen64]byte // a tag and a length
	end := p.len()
	h := p.appendTo(head[:0], i, min(i+len(head), end))
	num, typ, tn := protowire.ConsumeTag(h)
	if tn < 0 {
		return 0, 0, 0, false
	}
	var m int
	switch typ {
	case protowire.VarintType:
		_, m = protowire.ConsumeVarint(h[tn:])
	case protowire.Fixed32Type:
		m = 4
	case protowire.Fixed64Type:
		m = 8
	case protowire.BytesType:
		v, vn := protowire.ConsumeVarint(h[tn:])
		if vn < 0 || v > uint64(end) {
			return 0, 0, 0, false
		}
		m = vn + int(v)
	default:
		return 0, 0, 0, false
	}
	if m < 0 || i+tn+m > end {
		return 0, 0, 0, false
	}
	return num, typ, i + tn + m, true
}

// resolve finds the set the request's n names make: the stream's last one
// of the type when the names are its encoding, or else one found by key
// and confirmed name by name; otherwise it makes the names.
func (r *sotwRequest) resolve(b []byte, n int) error {
	last := r.known[r.req.GetTypeUrl()]
	if r.match != nil && r.match == last && n == last.len() {
		r.set = last // the common ACK: one comparison, no hashing, no allocation
		return nil
	}
	key := setKey{n: n}
	eachBytes(b, resourceNamesField, func(v []byte) bool { key.sum += maphash.Bytes(r.seed, v); return true })
	if last != nil && last.key == key && namesAre(b, resourceNamesField, last) {
		r.set = last // the same names in another order
		return nil
	}
	if set := r.interned(key); set != nil && namesAre(b, resourceNamesField, set) {
		r.set = set // another stream subscribes to the same names
		return nil
	}
	r.names = make([]string, 0, n)
	var bad []byte
	eachBytes(b, resourceNamesField, func(v []byte) bool {
		if !utf8.Valid(v) && bad == nil {
			bad = v
		}
		r.names = append(r.names, string(v))
		return true
	})
	if bad != nil {
		return fmt.Errorf("resource_names: %q is not valid UTF-8", bad)
	}
	return nil
}

// eachBytes calls fn with the value of each bytes field numbered field in
// b, a message checked already, until fn returns false. It reports whether
// fn never did. A short value under a one-byte tag (every resource name
// shorter than 128 bytes) is read without the general decoder.
func eachBytes(b []byte, field protowire.Number, fn func([]byte) bool) bool {
	tag := byte(protowire.EncodeTag(field, protowire.BytesType))
	short := field < 16 // the tag is one byte
	for i := 0; i < len(b); {
		if short && b[i] == tag && i+1 < len(b) && b[i+1] < 0x80 && i+2+int(b[i+1]) <= len(b) {
			if !fn(b[i+2 : i+2+int(b[i+1])]) {
				return false
			}
			i += 2 + int(b[i+1])
			continue
		}
		num, typ, n := protowire.ConsumeTag(b[i:])
		m := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if num == field && typ == protowire.BytesType {
			if v, _ := protowire.ConsumeBytes(b[i+n:]); !fn(v) {
				return false
			}
		}
		i += n + m
	}
	return true
}

// namesAre reports whether the bytes fields numbered field in b name
// exactly the set's names (a name may repeat): a set found by its key is
// confirmed this way before it is used.
func namesAre(b []byte, field protowire.Number, set *nameSet) bool {
	m := set.marks()
	return eachBytes(b, field, m.markBytes) && m.all()
}

// subscribeField is DeltaDiscoveryRequest.resource_names_subscribe.
var subscribeField = (&discoveryv3.DeltaDiscoveryRequest{}).ProtoReflect().Descriptor().Fields().ByName("resource_names_subscribe").Number()

// deltaRequest is a DeltaDiscoveryRequest whose subscribed names are
// looked up among the interned sets before any string is made (a set found
// is confirmed name by name): a sidecar's first EDS request names every
// cluster, as a thousand others did before.
type deltaRequest struct {
	req      discoveryv3.DeltaDiscoveryRequest // subscribe names only when set is nil
	seed     maphash.Seed
	interned func(setKey) *nameSet

	set      *nameSet // the subscribed names, when interned already
	nodeWire []byte   // the node as it came, when kept (see nodeField)
	skipNode bool     // the stream has its node: a node here is not decoded (see withoutNode)
}

// GetNode returns the request's node (RequireIdentity checks it).
func (r *deltaRequest) GetNode() *corev3.Node { return r.req.GetNode() }

func (r *deltaRequest) keepNodeWire(b []byte) { r.nodeWire = b }

func (r *deltaRequest) nodeNumber() protowire.Number { return deltaNodeField }

// reset clears r for its next request, as for SotW.
func (r *deltaRequest) reset() {
	proto.Reset(&r.req)
	r.set, r.nodeWire, r.skipNode = nil, nil, false
}

// Field numbers of a DeltaDiscoveryRequest that an answer to a response
// (an ACK) carries, and nothing else.
const (
	deltaTypeURLField = 2
	deltaNonceField   = 6
)

// unmarshalAnswer decodes b, as proto.Unmarshal would, when it holds a
// type URL and a response nonce only (valid UTF-8, the last of a repeated
// field winning), which is what a proxy's ACK holds: a thousand of them
// come back after each push. For anything else it reports false, having
// changed nothing.
func (r *deltaRequest) unmarshalAnswer(b []byte) bool {
	var typeURL, nonce []byte
	for in := b; len(in) > 0; {
		num, typ, n := protowire.ConsumeTag(in)
		if n < 0 || typ != protowire.BytesType || num != deltaTypeURLField && num != deltaNonceField {
			return false
		}
		v, m := protowire.ConsumeBytes(in[n:])
		if m < 0 || !utf8.Valid(v) {
			return false
		}
		if num == deltaTypeURLField {
			typeURL = v
		} else {
			nonce = v
		}
		in = in[n+m:]
	}
	r.req.TypeUrl, r.req.ResponseNonce = internType(typeURL), string(nonce)
	return true
}

// internType returns typeURL as a string, xdsTypes' own when it is one.
func internType(typeURL []byte) string {
	for _, t := range xdsTypes {
		if t == string(typeURL) {
			return t
		}
	}
	return string(typeURL)
}

func (r *deltaRequest) unmarshal(b []byte) error {
	if r.unmarshalAnswer(b) {
		return nil
	}
	if r.skipNode {
		b = withoutNode(b, deltaNodeField)
	}
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
		if set := r.interned(key); set != nil && namesAre(b, subscribeField, set) {
			r.set = set
			return proto.Unmarshal(rest, &r.req)
		}
	}
	return proto.Unmarshal(b, &r.req)
}
