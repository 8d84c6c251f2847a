// Package server serves the snapshot of every connected proxy over xDS
// (ADS state-of-the-world and delta, plus the per-type services), CSDS,
// gRPC health and reflection, and the HTTP health, metrics and debug views.
//
// The push path, one step per file:
//
//	debounce.go  pushLoop waits out a burst of registry changes, then calls
//	pusher.go    rebuild: affected.go picks the conns a change touches, each is
//	             built (snapshot.Builder), versioned (versions.go) and, if a
//	             version changed, handed to its conn, which wakes its stream.
//	conn.go      conn: one stream's proxy and all the server keeps of it
//	             (snapshot, kind, sent/ACKed/NACKed per type, convergence).
//	stream.go    a stream's two goroutines wait, one for requests, one on a
//	             single channel for requests read, wakes and the reader's end;
//	             the work of each runs on a goroutine of its own, one at a
//	             time (onOwnStack): the request is
//	             decoded (codec.go; subscription.go interns its names) and
//	             handled, and flush.go picks what the proxy lacks and responds.
//	             The proxy's ACK or NACK comes back to stream.go's answered.
package server
