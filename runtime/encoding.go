package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// newOutRequest is req as a client sends it, due at deadline, with the
// metadata and the request context of ctx.
func newOutRequest(ctx context.Context, req *Request, deadline time.Time) wire.Out {
	r := wire.Out{MsgID: uuid.NewString(), Method: req.Method, Version: req.Since, Args: req.Args, Deadline: deadline, Context: OsloContext(ctx), Meta: OutgoingMetadata(ctx)}
	if req.Service != nil {
		r.Namespace = req.Service.Namespace
	}
	return r
}

// capped returns ErrVersionCap, saying why, for a request newer than its
// target's version cap, and nil otherwise.
func capped(req *Request) error {
	if req.VersionCap != "" && !wire.Compatible(req.VersionCap, req.Since) {
		return fmt.Errorf("%w: the method needs %s, the cap is %s", ErrVersionCap, wire.VersionOr1(req.Since), req.VersionCap)
	}
	return nil
}

// tooLarge returns ErrTooLarge, saying why, for a request body over limit.
func tooLarge(body []byte, limit int) error {
	if len(body) > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(body), limit)
	}
	return nil
}

// encodeReply makes with p the reply to in, carrying result or failure;
// from, when set, names the server. A result that does not encode, or
// whose encoding panics (a MarshalJSON of the method's), is the method's
// failure, not the server's: the reply then carries a CodeInternal
// failure, and sv's log says why.
func encodeReply(p *wire.Protocol, sv *services, oslo *OsloConfig, in *wire.In, from string, result any, failure *Error) amqp.Publishing {
	var pub amqp.Publishing
	var f *wire.Failure
	if failure != nil {
		f = failure.failure(oslo)
	}
	if err := encodeReplySafely(p, &pub, in.MsgID, from, result, f); err != nil {
		sv.throttle.methodError(sv.log, in.Method, "amqprpc: encode reply", "correlation_id", in.MsgID, "method", in.Method, "error", err)
		f = (&Error{Code: CodeInternal, Message: fmt.Sprintf("encode result of %q: %v", in.Method, err)}).failure(oslo)
		if err := p.EncodeReply(&pub, in.MsgID, from, nil, f); err != nil {
			panic("amqprpc: a failure does not encode: " + err.Error())
		}
	}
	return pub
}

// encodeReplySafely encodes a reply with p, and returns an error rather
// than panic when a result's MarshalJSON does.
func encodeReplySafely(p *wire.Protocol, pub *amqp.Publishing, msgID, from string, result any, failure *wire.Failure) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return p.EncodeReply(pub, msgID, from, result, failure)
}

// decodeReply decodes with p the result of reply r into v, or returns the
// server's error with the identity of the declared error of svc, or of
// the OsloException of oslo, that it names.
func decodeReply(p *wire.Protocol, oslo *OsloConfig, r *wire.Reply, v any, svc *ServiceDesc) error {
	f, err := p.DecodeReply(r, v)
	switch {
	case errors.Is(err, wire.ErrMalformed):
		return fmt.Errorf("%w: %v", ErrMalformedReply, err)
	case err != nil:
		return err
	case f != nil:
		return remoteError(f, svc, oslo)
	}
	return nil
}

// decodeArgs decodes a request's arguments object into args, the generated
// argument struct of the method. Names that the method does not have are an
// error, so that a misspelt argument fails instead of being dropped.
func decodeArgs(raw json.RawMessage, args any) error {
	if len(raw) == 0 {
		return nil
	}
	a := argsDecoders.Get().(*argsDecoder)
	a.r.Reset(raw)
	start := a.dec.InputOffset()
	err := a.dec.Decode(args)
	clean := err == nil && a.dec.InputOffset()-start == int64(len(raw)) && a.dec.Buffered().(*bytes.Reader).Len() == 0
	a.r.Reset(nil)
	if clean { // nothing of raw is left in the decoder: it can decode the next
		argsDecoders.Put(a)
	}
	return err
}

// argsDecoder is a json.Decoder that rejects unknown fields, kept for reuse:
// making one for each request costs more than decoding small arguments.
type argsDecoder struct {
	r   bytes.Reader
	dec *json.Decoder
}

var argsDecoders = sync.Pool{New: func() any {
	a := new(argsDecoder)
	a.dec = json.NewDecoder(&a.r)
	a.dec.DisallowUnknownFields()
	return a
}}
