package runtime

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/amqprpc/amqprpc/internal/wire"
)

func TestDecodeArgs(t *testing.T) {
	var args struct {
		V1 int `json:"v1"`
	}
	if err := decodeArgs([]byte(`{"v1":7}`), &args); err != nil || args.V1 != 7 {
		t.Fatalf("decodeArgs = %+v, %v", args, err)
	}
	if err := decodeArgs(nil, &args); err != nil {
		t.Fatalf("decodeArgs(no args) = %v", err)
	}
	if err := decodeArgs([]byte(`{"v2":7}`), &args); err == nil {
		t.Fatal("decodeArgs accepted an argument the method does not have")
	}
	if err := decodeArgs([]byte(`{"v1":"seven"}`), &args); err == nil {
		t.Fatal("decodeArgs accepted a string for an int")
	}
}

// TestDecodeArgsReusesDecoders decodes arguments one after another,
// good and bad, as a server's pooled decoders see them: none leaks into
// the next.
func TestDecodeArgsReusesDecoders(t *testing.T) {
	type args struct {
		V1 int `json:"v1"`
		V2 int `json:"v2"`
	}
	for i := range 50 {
		var a args
		if err := decodeArgs([]byte(fmt.Sprintf(`{"v1":%d,"v2":1}`, i)), &a); err != nil || a.V1 != i || a.V2 != 1 {
			t.Fatalf("decode %d = %+v, %v", i, a, err)
		}
		for _, bad := range []string{`{"v1":1,"v3":2}`, `{"v1":"x"}`, `{"v1":1`} {
			if err := decodeArgs([]byte(bad), &a); err == nil {
				t.Fatalf("decode %s succeeded", bad)
			}
		}
		// Never an object's arguments, but what is left of them must not
		// reach the next request.
		decodeArgs([]byte(`{"v1":1} {"v1":2}`), &a)
	}
}

func TestContextErrorsCrossTheWire(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   Code
		target error
	}{
		{context.DeadlineExceeded, CodeDeadlineExceeded, context.DeadlineExceeded},
		{fmt.Errorf("sleep: %w", context.Canceled), CodeCanceled, context.Canceled},
		{Errorf(CodeNotFound, "gone: %w", context.DeadlineExceeded), CodeNotFound, nil},
	} {
		sent := toError(tc.err, &ServiceDesc{}).failure(nil)
		if sent.Code != string(tc.code) {
			t.Errorf("toError(%v).Code = %s; want %s", tc.err, sent.Code, tc.code)
		}
		// On the client, which has only the code.
		got := remoteError(sent, nil, nil)
		if tc.target != nil && !errors.Is(got, tc.target) {
			t.Errorf("errors.Is(%v, %v) = false", got, tc.target)
		}
		if errors.Is(got, context.DeadlineExceeded) && tc.code != CodeDeadlineExceeded {
			t.Errorf("%v matches context.DeadlineExceeded", got)
		}
	}
}

// TestDecodeReplyMapsErrors: a reply the client cannot read is
// ErrMalformedReply; one that carries a failure is an *Error with its
// code, message and declared identity.
func TestDecodeReplyMapsErrors(t *testing.T) {
	errGone := errors.New("gone")
	svc := &ServiceDesc{Errors: []ErrorDesc{SentinelError("test.errGone", errGone)}}
	p := wire.Amqprpc(wire.AmqprpcTopology{Exchange: DefaultExchange})
	var n int
	if err := decodeReply(p, nil, &wire.Reply{Body: []byte(`{"result":"five"}`)}, &n, svc); !errors.Is(err, ErrMalformedReply) {
		t.Errorf("decodeReply(a string for an int) = %v; want ErrMalformedReply", err)
	}
	err := decodeReply(p, nil, &wire.Reply{Body: []byte(`{"failure":{"code":"not_found","message":"m","type":"test.errGone"}}`)}, &n, svc)
	if rerr, ok := errors.AsType[*Error](err); !ok || rerr.Code != CodeNotFound || rerr.Message != "m" || !errors.Is(err, errGone) {
		t.Errorf("decodeReply(a failure) = %v; want an *Error of code not_found that is errGone", err)
	}
}
