package rpc

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// preEncoded is a message whose wire bytes are already assembled: a list of
// byte slices that, concatenated, are one protobuf message. Watch streams
// send events this way so that an event is encoded once and its bytes are
// shared, unchanged and uncopied, by every watcher that receives it.
type preEncoded struct {
	parts [][]byte
	size  int
}

func (p *preEncoded) add(b []byte) {
	p.parts = append(p.parts, b)
	p.size += len(b)
}

// serverCodec is the server's gRPC codec: it passes preEncoded messages
// through as they are and encodes everything else as protobuf. Its name is
// "proto", so clients see ordinary protobuf on the wire.
type serverCodec struct {
	proto encoding.CodecV2
}

func newServerCodec() serverCodec {
	return serverCodec{proto: encoding.GetCodecV2(proto.Name)}
}

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		out := make(mem.BufferSlice, 0, len(p.parts))
		for _, b := range p.parts {
			if len(b) > 0 {
				// SliceBuffer's Free does nothing: the shared bytes are
				// never returned to a pool, so every watcher may hold them.
				out = append(out, mem.SliceBuffer(b))
			}
		}
		return out, nil
	}
	return c.proto.Marshal(v)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

func (serverCodec) Name() string { return proto.Name }
