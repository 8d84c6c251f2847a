package loadtest

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// sotwResponse is the part of a DiscoveryResponse the load client checks,
// read straight from the wire: the resources stay encoded (sub-slices of
// the message, no copy, no Any or resource message made) since the client
// only hashes them, looks for markers in them and parses the few it has
// not seen before. Decoding whole responses made the client, not the
// server, the bottleneck of a SotW push.
type sotwResponse struct {
	raw                  []byte // the whole message
	versionInfo, typeURL string
	nonce                string
	resources            []wireAny
	// release, when set, hands the bytes raw and resources are in back to
	// the pool they came from: nothing of them may be used afterwards.
	release func()
}

// wireAny is an encoded google.protobuf.Any.
type wireAny struct {
	typeURL string
	value   []byte
}

// DiscoveryResponse and Any field numbers.
const (
	respVersionInfo protowire.Number = 1
	respResources   protowire.Number = 2
	respTypeURL     protowire.Number = 4
	respNonce       protowire.Number = 5
	anyTypeURL      protowire.Number = 1
	anyValue        protowire.Number = 2
)

// decodeSotWResponse reads b, an encoded DiscoveryResponse, keeping
// sub-slices of it.
func decodeSotWResponse(b []byte) (*sotwResponse, error) {
	r := &sotwResponse{raw: b}
	if n := countResources(b); n > 0 {
		r.resources = make([]wireAny, 0, n)
	}
	err := eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case respVersionInfo:
			r.versionInfo = string(v)
		case respTypeURL:
			r.typeURL = typeURLString(v)
		case respNonce:
			r.nonce = string(v)
		case respResources:
			a, err := decodeWireAny(v)
			if err != nil {
				return fmt.Errorf("resource %d: %w", len(r.resources), err)
			}
			r.resources = append(r.resources, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discovery response: %w", err)
	}
	return r, nil
}

// countResources counts the resources of the encoded DiscoveryResponse b,
// so decodeSotWResponse makes their slice once: a CDS response of scenario
// S has 1000, and growing the slice to them made BenchmarkDecodeSotWResponse
// take 67 instead of 56 us and 90 instead of 41 KB, this second pass
// included. It stops at the first malformed field, which
// decodeSotWResponse then reports.
func countResources(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if num == respResources && typ == protowire.BytesType {
			n++
		}
	}
	return n
}

// typeURLString returns v as a string, without a copy for the types the
// client subscribes to: every resource repeats its type URL, and copying
// it took 44 of BenchmarkDecodeSotWResponse's 100 us (one allocation per
// resource).
func typeURLString(v []byte) string {
	switch string(v) { // compared in place, not copied
	case cdsType:
		return cdsType
	case ldsType:
		return ldsType
	case edsType:
		return edsType
	case rdsType:
		return rdsType
	case vhdsType:
		return vhdsType
	}
	return string(v)
}

// decodeWireAny reads an encoded Any.
func decodeWireAny(b []byte) (wireAny, error) {
	var a wireAny
	return a, mergeWireAny(&a, b)
}

// mergeWireAny reads an encoded Any into a, as proto merges one: each field
// present replaces a's.
func mergeWireAny(a *wireAny, b []byte) error {
	return eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case anyTypeURL:
			a.typeURL = typeURLString(v)
		case anyValue:
			a.value = v
		}
		return nil
	})
}

// DiscoveryRequest field numbers.
const (
	reqVersionInfo   protowire.Number = 1
	reqResourceNames protowire.Number = 3
	reqTypeURL       protowire.Number = 4
	reqNonce         protowire.Number = 5
)

// sotwACK is a DiscoveryRequest the client encodes itself: an ACK (or a
// request for new names) whose resource names are already encoded. An
// Envoy SotW ACK of EDS repeats every name it wants (~60 KB for 1000
// clusters); encoding them once per change of the names, not once per
// ACK, keeps the client's CPU for receiving what the server sends.
type sotwACK struct {
	versionInfo, typeURL, nonce string
	names                       []byte // encodeNames of the names
}

// encodeNames encodes names as DiscoveryRequest.resource_names.
func encodeNames(names []string) []byte {
	var b []byte
	for _, n := range names {
		b = protowire.AppendTag(b, reqResourceNames, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	return b
}

func (r *sotwACK) size() int {
	str := func(s string) int {
		if s == "" {
			return 0
		}
		return protowire.SizeTag(1) + protowire.SizeBytes(len(s))
	}
	return str(r.versionInfo) + len(r.names) + str(r.typeURL) + str(r.nonce)
}

// appendTo appends the request's encoding, fields in number order as
// proto.Marshal writes them.
func (r *sotwACK) appendTo(b []byte) []byte {
	str := func(b []byte, num protowire.Number, s string) []byte {
		if s == "" {
			return b
		}
		return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
	}
	b = str(b, reqVersionInfo, r.versionInfo)
	b = append(b, r.names...)
	b = str(b, reqTypeURL, r.typeURL)
	return str(b, reqNonce, r.nonce)
}

// deltaResponse is the part of a DeltaDiscoveryResponse the load client
// checks, read straight from the wire as sotwResponse is: resource names
// and values stay sub-slices of the message. Decoding whole delta
// responses (every Resource, its Any, its strings) took 62% of the client's
// CPU while a thousand delta proxies connected at scenario S, and made
// their connecting take 11-27 s against SotW's 2.
type deltaResponse struct {
	raw       []byte // the whole message
	typeURL   string
	nonce     string
	resources []deltaResource
	removed   []string
	// release is as sotwResponse's.
	release func()
}

// deltaResource is an encoded Resource of a delta response.
type deltaResource struct {
	name []byte
	any  wireAny
}

// DeltaDiscoveryResponse and Resource field numbers.
const (
	deltaRespResources protowire.Number = 2
	deltaRespTypeURL   protowire.Number = 4
	deltaRespNonce     protowire.Number = 5
	deltaRespRemoved   protowire.Number = 6
	resourceResource   protowire.Number = 2
	resourceName       protowire.Number = 3
)

// decodeDeltaResponse reads b, an encoded DeltaDiscoveryResponse, keeping
// sub-slices of it.
func decodeDeltaResponse(b []byte) (*deltaResponse, error) {
	r := &deltaResponse{raw: b}
	if n := countResources(b); n > 0 { // the same field number as a SotW response's
		r.resources = make([]deltaResource, 0, n)
	}
	err := eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case deltaRespTypeURL:
			r.typeURL = typeURLString(v)
		case deltaRespNonce:
			r.nonce = string(v)
		case deltaRespRemoved:
			r.removed = append(r.removed, string(v))
		case deltaRespResources:
			res, err := decodeDeltaResource(v)
			if err != nil {
				return fmt.Errorf("resource %d: %w", len(r.resources), err)
			}
			r.resources = append(r.resources, res)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delta discovery response: %w", err)
	}
	return r, nil
}

// decodeDeltaResource reads an encoded Resource. Its Any, if it comes in
// more than one field, is merged as proto merges it: the last of each of
// its fields wins.
func decodeDeltaResource(b []byte) (deltaResource, error) {
	var r deltaResource
	err := eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case resourceName:
			r.name = v
		case resourceResource:
			return mergeWireAny(&r.any, v)
		}
		return nil
	})
	return r, err
}

// eachBytesField calls fn with each length-delimited field of the encoded
// message b, stepping over the others; it stops at the first error.
func eachBytesField(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}
