package server

import (
	"testing"
	"unsafe"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestConnRecordsWhatTheProxySaid: what a connection keeps of each type
// (sent, ACKed, NACKed with why, when, how many responses) comes back as
// the TypeStatus CSDS and the debug views read, through a NACK, a new
// version, an ACK and a resumed stream.
func TestConnRecordsWhatTheProxySaid(t *testing.T) {
	c := &conn{observe: func(float64) {}}
	cds, eds := typeIndex(resourcev3.ClusterType), typeIndex(resourcev3.EndpointType)
	steps := []struct {
		name string
		do   func() bool // reports a new NACK
		want TypeStatus
		nack bool
	}{
		{name: "never sent", do: func() bool { return false }, want: TypeStatus{}},
		{name: "sent v1", do: func() bool { c.sent(cds, "v1"); return false },
			want: TypeStatus{TypeURL: resourcev3.ClusterType, Sent: "v1", Responses: 1}},
		{name: "v1 rejected", do: func() bool { return c.answered(cds, "v1", "bad cluster", true) },
			want: TypeStatus{TypeURL: resourcev3.ClusterType, Sent: "v1", Nacked: "v1", NackError: "bad cluster", Responses: 1}, nack: true},
		{name: "v1 rejected again", do: func() bool { return c.answered(cds, "v1", "bad cluster", true) },
			want: TypeStatus{TypeURL: resourcev3.ClusterType, Sent: "v1", Nacked: "v1", NackError: "bad cluster", Responses: 1}},
		{name: "v2 replaces the rejected v1", do: func() bool { c.sent(cds, "v2"); return false },
			want: TypeStatus{TypeURL: resourcev3.ClusterType, Sent: "v2", Responses: 2}},
		{name: "v2 ACKed", do: func() bool { return c.answered(cds, "v2", "", false) },
			want: TypeStatus{TypeURL: resourcev3.ClusterType, Sent: "v2", Acked: "v2", Responses: 2}},
	}
	for _, st := range steps {
		if got := st.do(); got != st.nack {
			t.Errorf("%s: new NACK %v, want %v", st.name, got, st.nack)
		}
		got := c.status().types[cds]
		if st.want.Responses > 0 && got.SentAt.IsZero() {
			t.Errorf("%s: no send time", st.name)
		}
		if (st.want.Acked != "" || st.want.Nacked != "") && got.AnsweredAt.IsZero() {
			t.Errorf("%s: no answer time", st.name)
		}
		got.SentAt, got.AnsweredAt = st.want.SentAt, st.want.AnsweredAt
		if got != st.want {
			t.Errorf("%s: status %+v, want %+v", st.name, got, st.want)
		}
	}
	c.resumed(eds, "e1")
	if got := c.status().types[eds]; got.TypeURL != resourcev3.EndpointType || got.Sent != "e1" || got.Acked != "e1" || got.Responses != 0 {
		t.Errorf("resumed: %+v, want e1 sent and ACKed, no response", got)
	}
	if n := unsafe.Sizeof(typeRecord{}); n > 64 {
		t.Errorf("typeRecord is %d bytes, want at most 64 (one per type per proxy)", n)
	}
}
