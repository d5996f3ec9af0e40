package otelamqprpc

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/amqprpc/amqprpc/runtime"
)

// itemsKey is the attribute of the number of a stream's items: those the
// caller read, on the client; those its method yielded, on the server.
const itemsKey = attribute.Key("amqprpc.stream.items")

// errPanicked is the failure of a stream whose method, or an interceptor
// below, panicked: the runtime answers it as an internal error.
var errPanicked = &runtime.Error{Code: runtime.CodeInternal, Message: "panicked"}

// StreamClientInterceptor returns an interceptor that traces and measures
// each stream a client opens, and sends the trace context with its
// request: its span, of kind client, ends at the stream's last item, at
// its failure, or at its Close, whichever comes first. A stream that its
// caller stops early (breaks out of its loop, closes it, or cancels its
// context) ends well. Its duration and failure are measured as a call's.
func StreamClientInterceptor(opts ...Option) runtime.StreamClientInterceptor {
	s := newClientSide(opts)
	return func(ctx context.Context, req *runtime.Request, next runtime.Streamer) (runtime.ClientStream, error) {
		ctx, span, m := s.start(ctx, req)
		sp := &streamSpan{ctx: ctx, span: span, in: s.in, m: m, start: m.begin(), typeOf: errorType}
		opened, err := false, error(errPanicked) // until next returns: should it panic, the stream ends as one that did
		defer func() {
			if !opened {
				sp.end(err)
			}
		}()
		st, err := next(ctx, req)
		if err != nil {
			return nil, err
		}
		opened = true
		return &tracedStream{ClientStream: st, sp: sp}, nil
	}
}

// StreamServerInterceptor returns an interceptor that traces and measures
// each stream a server runs, as the child of its caller's span: its span,
// of kind server, ends when the iteration over the method's items ends
// (or, for a stream that ends before its items are read, when its
// context does). A stream fails with the error its method yields, or
// with its deadline when that cut it short; one that its caller stopped
// ends well. Its duration and failure are measured as a call's.
func StreamServerInterceptor(opts ...Option) runtime.StreamServerInterceptor {
	s := newServerSide(opts)
	return func(ctx context.Context, info *runtime.ServerInfo, next runtime.StreamHandler) (runtime.Items, error) {
		ctx, span, m := s.start(ctx, info)
		sp := &streamSpan{ctx: ctx, span: span, in: s.in, m: m, start: m.begin(), typeOf: serverErrorType}
		opened, err := false, error(errPanicked) // until next returns: should it panic, the stream ends as one that did
		defer func() {
			if !opened {
				sp.end(err)
			}
		}()
		items, err := next(ctx)
		if err != nil || items == nil { // a refusal, or a stream without items
			return nil, err
		}
		opened = true
		return sp.counted(items), nil
	}
}

// streamSpan is the span and the measurements of one stream, on either
// side. end is the one place a stream ends, and it ends once: whichever
// of its ends comes first (its last item, its failure, its Close, the end
// of its context) ends its span, and the others find it ended.
type streamSpan struct {
	ctx    context.Context
	span   trace.Span
	in     *instruments
	m      *methodStats
	start  time.Time
	typeOf func(error) string // the error.type of a failure
	items  atomic.Int64
	once   sync.Once
}

// end ends the stream with err, nil when it ended well or its caller
// stopped it: it records its items, its outcome and its duration, and
// counts it out of the streams in flight.
func (sp *streamSpan) end(err error) {
	sp.once.Do(func() {
		if sp.span.IsRecording() {
			sp.span.SetAttributes(itemsKey.Int64(sp.items.Load()))
		}
		sp.in.end(sp.ctx, sp.m, sp.start, sp.span, err, sp.typeOf)
		sp.m.done()
		sp.span.End()
	})
}

// tracedStream is a client's stream whose end ends its span.
type tracedStream struct {
	runtime.ClientStream
	sp *streamSpan
}

func (t *tracedStream) Recv(item any) error {
	err := t.ClientStream.Recv(item)
	switch {
	case err == nil:
		t.sp.items.Add(1)
	case err == io.EOF:
		t.sp.end(nil)
	case errors.Is(err, context.Canceled) && t.sp.ctx.Err() != nil: // the caller stopped it, as a break does
		t.sp.end(nil)
	default:
		t.sp.end(err)
	}
	return err
}

func (t *tracedStream) Close() {
	t.ClientStream.Close()
	t.sp.end(nil)
}

// counted returns items, counting each the method yields and ending the
// stream when their iteration ends: with the first error the method
// yields, or with the stream's deadline when that cut it short. Items
// that the runtime never iterates (the stream ended before it ran: its
// caller closed it, or the server could not start it) end it when its
// context ends.
func (sp *streamSpan) counted(items runtime.Items) runtime.Items {
	var ran atomic.Bool
	unwatch := context.AfterFunc(sp.ctx, func() {
		if !ran.Load() {
			sp.end(sp.cut())
		}
	})
	return func(yield func(any, error) bool) {
		ran.Store(true)
		unwatch()
		err := error(errPanicked) // until the loop is over: should the method or the runtime panic, the stream ends as one that did
		defer func() { sp.end(err) }()
		var failure error
		for v, e := range items {
			if e == nil {
				sp.items.Add(1)
			} else if failure == nil {
				failure = e
			}
			if !yield(v, e) {
				break
			}
		}
		if err = failure; err == nil {
			err = sp.cut()
		}
	}
}

// cut is the failure of a server's stream that its method did not fail:
// its deadline, when that ended its context (its caller is told so); nil
// when it ended well, or its caller stopped it.
func (sp *streamSpan) cut() error {
	if errors.Is(context.Cause(sp.ctx), context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return nil
}
