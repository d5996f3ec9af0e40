package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestClassicEncodeRequest(t *testing.T) {
	var pub amqp.Publishing
	args := struct {
		V1 int `json:"v1"`
		V2 int `json:"v2"`
	}{2, 3}
	if err := (classic{}).encodeRequest(&pub, &outRequest{msgID: "id-1", method: "add", args: &args, replyTo: "amq.gen-reply"}); err != nil {
		t.Fatal(err)
	}
	if want := `{"method":"add","args":{"v1":2,"v2":3},"msg_id":"id-1"}`; string(pub.Body) != want {
		t.Errorf("body = %s; want %s", pub.Body, want)
	}
	if pub.CorrelationId != "id-1" || pub.ReplyTo != "amq.gen-reply" || pub.ContentType != "application/json" {
		t.Errorf("properties = correlation_id %q, reply_to %q, content_type %q", pub.CorrelationId, pub.ReplyTo, pub.ContentType)
	}

	if err := (classic{}).encodeRequest(&pub, &outRequest{msgID: "id-2", method: "f", args: map[string]any{"c": make(chan int)}}); err == nil {
		t.Error("encoding a channel argument succeeded; want an error")
	}
}

func TestClassicDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		d       amqp.Delivery
		wantErr error
		want    inRequest
	}{{
		name: "reply_to",
		d:    amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Body: []byte(`{"method":"add","args":{"v1":1},"msg_id":"m1"}`)},
		want: inRequest{msgID: "c1", method: "add", args: []byte(`{"v1":1}`), reply: route{key: "q1"}},
	}, {
		name: "classic msg_id",
		d:    amqp.Delivery{Body: []byte(`{"method":"add","args":{},"msg_id":"m1","_context_user":"x"}`)},
		want: inRequest{msgID: "m1", method: "add", args: []byte(`{}`), reply: route{exchange: "m1", key: "m1", declare: true}},
	}, {
		name: "no args",
		d:    amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Body: []byte(`{"method":"ping"}`)},
		want: inRequest{msgID: "c1", method: "ping", reply: route{key: "q1"}},
	}, {
		name: "null args",
		d:    amqp.Delivery{Body: []byte(`{"method":"ping","args":null}`)},
		want: inRequest{method: "ping", args: []byte(`null`)},
	}, {
		name:    "not JSON",
		d:       amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Body: []byte(`nope`)},
		wantErr: errNotJSON,
		want:    inRequest{msgID: "c1", reply: route{key: "q1"}},
	}, {
		name:    "no method",
		d:       amqp.Delivery{Body: []byte(`{"args":{},"msg_id":"m1"}`)},
		wantErr: errNoMethod,
		want:    inRequest{msgID: "m1", reply: route{exchange: "m1", key: "m1", declare: true}},
	}, {
		name:    "args not an object",
		d:       amqp.Delivery{Body: []byte(`{"method":"add","args":[1,2]}`)},
		wantErr: errBadArgs,
		want:    inRequest{method: "add"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var got inRequest
			err := (classic{}).decodeRequest(&tc.d, &got)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v; want %v", err, tc.wantErr)
			}
			if got.msgID != tc.want.msgID || got.method != tc.want.method || string(got.args) != string(tc.want.args) || got.reply != tc.want.reply {
				t.Errorf("got %+v (args %s); want %+v (args %s)", got, got.args, tc.want, tc.want.args)
			}
		})
	}
}

func TestClassicReplies(t *testing.T) {
	var pub amqp.Publishing
	if err := (classic{}).encodeReply(&pub, "c1", "", 5, nil); err != nil || string(pub.Body) != `{"result":5}` || pub.CorrelationId != "c1" {
		t.Fatalf("result reply = %s (correlation_id %q), %v", pub.Body, pub.CorrelationId, err)
	}
	var n int
	if err := (classic{}).decodeReply(&amqp.Delivery{Body: pub.Body}, &n); err != nil || n != 5 {
		t.Fatalf("decoded result = %d, %v; want 5", n, err)
	}

	if err := (classic{}).encodeReply(&pub, "c1", "", nil, &Error{Code: CodeInternal, Message: "boom"}); err != nil {
		t.Fatal(err)
	}
	if want := `{"failure":{"code":"internal","message":"boom"}}`; string(pub.Body) != want {
		t.Fatalf("failure reply = %s; want %s", pub.Body, want)
	}
	err := (classic{}).decodeReply(&amqp.Delivery{Body: pub.Body}, &n)
	if rerr, ok := errors.AsType[*Error](err); !ok || rerr.Code != CodeInternal || rerr.Message != "boom" {
		t.Fatalf("decoded failure = %v; want the *Error sent", err)
	}

	if err := (classic{}).encodeReply(&pub, "c1", "", make(chan int), nil); err == nil {
		t.Error("encoding a channel result succeeded; want an error")
	}
	for _, body := range []string{`nope`, `{"result":"five"}`} {
		if err := (classic{}).decodeReply(&amqp.Delivery{Body: []byte(body)}, &n); !errors.Is(err, ErrMalformedReply) {
			t.Errorf("decodeReply(%s) = %v; want ErrMalformedReply", body, err)
		}
	}
	if err := (classic{}).decodeReply(&amqp.Delivery{Body: []byte(`{"result":null}`)}, nil); err != nil {
		t.Errorf("decodeReply(null result, nil) = %v", err)
	}
}

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

func TestExpiration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Nanosecond:         "1",
		time.Millisecond:        "1",
		1500 * time.Microsecond: "2",
		30 * time.Second:        "30000",
		0:                       "1",
	} {
		if got := expiration(d); got != want {
			t.Errorf("expiration(%v) = %q; want %q", d, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:secret@host:5672/vh": "amqp://guest:xxxxx@host:5672/vh",
		"amqps://host/":                    "amqps://host/",
		"amqp://user@host/":                "amqp://user@host/",
		"::not a url":                      "<unparsable broker URL>",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestCompatible(t *testing.T) {
	for _, tc := range []struct {
		have, need string
		want       bool
	}{
		{"", "", true},
		{"1.0", "", true},
		{"", "1.0", true},
		{"1.3", "1.1", true},
		{"1.3", "1.3", true},
		{"1.1", "1.3", false},
		{"2.0", "1.0", false},
		{"1.9", "2.0", false},
		{"1.10", "1.9", true},
		{"x", "1.0", false},
		{"1.0", "1", false},
	} {
		if got := compatible(tc.have, tc.need); got != tc.want {
			t.Errorf("compatible(%q, %q) = %v; want %v", tc.have, tc.need, got, tc.want)
		}
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
		wire := toError(tc.err, &ServiceDesc{})
		if wire.Code != tc.code {
			t.Errorf("toError(%v).Code = %s; want %s", tc.err, wire.Code, tc.code)
		}
		// On the client, which has only the code.
		got := &Error{Code: wire.Code, Message: wire.Message}
		if tc.target != nil && !errors.Is(got, tc.target) {
			t.Errorf("errors.Is(%v, %v) = false", got, tc.target)
		}
		if errors.Is(got, context.DeadlineExceeded) && tc.code != CodeDeadlineExceeded {
			t.Errorf("%v matches context.DeadlineExceeded", got)
		}
	}
}

func TestDedupe(t *testing.T) {
	dd := newDedupe(2)
	q := route{key: "amq.gen-q"}
	a, first := dd.begin(q, "a")
	if !first {
		t.Fatal("first begin(a) is not first")
	}
	again, first := dd.begin(q, "a")
	if first || again != a {
		t.Fatal("second begin(a) does not return the first entry")
	}
	select {
	case <-again.done:
		t.Fatal("entry done before finish")
	default:
	}
	dd.finish(a, amqp.Publishing{Body: []byte("reply")})
	<-again.done
	if string(again.reply.Body) != "reply" {
		t.Fatalf("remembered reply = %q", again.reply.Body)
	}
	dd.begin(q, "b")
	dd.begin(q, "c") // forgets a, the oldest
	if _, first := dd.begin(q, "a"); !first {
		t.Fatal("a is still remembered beyond the size of 2")
	}
	if len(dd.entries) != 2 {
		t.Fatalf("%d entries remembered; want at most 2", len(dd.entries))
	}
}

// TestDedupeKeysOnTheCaller: a second caller that reuses another's request
// id is another request, and does not get the first caller's reply.
func TestDedupeKeysOnTheCaller(t *testing.T) {
	dd := newDedupe(8)
	first, _ := dd.begin(route{key: "amq.gen-alice"}, "1")
	dd.finish(first, amqp.Publishing{Body: []byte("alice's reply")})
	if e, isFirst := dd.begin(route{key: "amq.gen-mallory"}, "1"); !isFirst || e == first {
		t.Fatal("a request of another caller with the same id is taken for a delivery again of the first")
	}
	if _, isFirst := dd.begin(route{exchange: "1", key: "1", declare: true}, "1"); !isFirst {
		t.Fatal("a classic request with the same id is taken for a delivery again of the first")
	}
}

// TestDedupeBoundsItsMemory: the replies kept add up to at most
// dedupeMaxBytes, whatever their number.
func TestDedupeBoundsItsMemory(t *testing.T) {
	dd := newDedupe(1000)
	big := make([]byte, 1<<20)
	for i := range 100 {
		e, _ := dd.begin(route{key: "q"}, fmt.Sprint(i))
		dd.finish(e, amqp.Publishing{Body: big})
	}
	kept := 0
	for _, e := range dd.entries {
		kept += len(e.reply.Body)
	}
	if kept > dedupeMaxBytes || dd.bytes != kept {
		t.Fatalf("%d bytes of replies kept (counted %d); want at most %d", kept, dd.bytes, dedupeMaxBytes)
	}
	if _, isFirst := dd.begin(route{key: "q"}, "99"); isFirst {
		t.Fatal("the newest reply was forgotten")
	}
}

// fakeAcknowledger records the acks an acker sends, standing in for a
// channel.
type fakeAcknowledger struct {
	mu   sync.Mutex
	acks []string
}

func (f *fakeAcknowledger) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, fmt.Sprintf("%d%s", tag, map[bool]string{true: "+", false: ""}[multiple]))
	return nil
}

func (f *fakeAcknowledger) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.acks)
}

func TestAcker(t *testing.T) {
	f := new(fakeAcknowledger)
	a := newAcker(f, 16) // batch 4, behind 8
	// 2 finishes before 1; nothing is acked until the run from 1 is complete.
	a.finish(2, true)
	time.Sleep(5 * ackDelay)
	if f.String() != "[]" {
		t.Fatalf("acked %v with tag 1 still running", f)
	}
	a.finish(1, true)
	a.finish(3, false) // settled by the worker (a nack): not acked
	a.finish(4, true)  // the run 1..4 makes a batch: one multiple ack up to 4, at once
	if want := "[4+]"; f.String() != want {
		t.Fatalf("acks %v; want %s", f, want)
	}
	a.finish(5, true) // less than a batch: acked within ackDelay
	if want := "[4+]"; f.String() != want {
		t.Fatalf("acks %v; want %s until ackDelay passes", f, want)
	}
	time.Sleep(5 * ackDelay)
	if want := "[4+ 5+]"; f.String() != want {
		t.Fatalf("acks %v; want %s after ackDelay", f, want)
	}

	// A slow request (6) does not hold back the acks of those after it.
	for tag := uint64(7); tag < 15; tag++ {
		a.finish(tag, true)
	}
	if n := strings.Count(f.String(), " "); n != 1+8 {
		t.Fatalf("acks %v; want the 8 finished behind tag 6 acked one by one", f)
	}
	a.finish(6, true)
	time.Sleep(5 * ackDelay)
	if s := f.String(); !strings.HasSuffix(s, " 6+]") {
		t.Fatalf("acks %v; want 6+ last, which covers no tag acked already but 6", s)
	}
	a.stop()
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

// TestMetadataOnTheWire: metadata goes as headers of a request alone, as
// "headers" of a request in a batch, and comes back the same; keys of the
// runtime's and the broker's are neither sent nor read as metadata.
func TestMetadataOnTheWire(t *testing.T) {
	md := Metadata{"traceparent": "00-abc-def-01", "tenant": "t1", "amqprpc-deadline": "forged", "x-delivery-count": "forged"}
	var pub amqp.Publishing
	if err := (classic{}).encodeRequest(&pub, &outRequest{msgID: "m", method: "add", meta: md, deadline: time.UnixMilli(1767225600000)}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pub.Headers) != "map[amqprpc-deadline:1767225600000 tenant:t1 traceparent:00-abc-def-01]" {
		t.Errorf("headers %v", pub.Headers)
	}
	var r inRequest
	pub.Headers["x-delivery-count"] = int64(2) // the broker's
	pub.Headers["x-first-death-reason"] = "rejected"
	pub.Headers["count"] = int32(7) // not a string
	if err := (classic{}).decodeRequest(&amqp.Delivery{Headers: pub.Headers, Body: pub.Body}, &r); err != nil || fmt.Sprint(r.meta) != "map[tenant:t1 traceparent:00-abc-def-01]" {
		t.Errorf("decoded metadata %v, %v", r.meta, err)
	}

	odd := Metadata{"odd\"key\\": "line\nü\x01", "": ""}
	reqs := []batchedRequest{{msgID: "a", meta: md, body: []byte(`{"method":"add"}`)}, {msgID: "b", body: []byte(`{"method":"add"}`)},
		{msgID: "c", meta: odd, body: []byte(`{"method":"add"}`)}}
	pub = amqp.Publishing{}
	if err := (classic{}).encodeRequests(&pub, "q", reqs); err != nil {
		t.Fatal(err)
	}
	d := amqp.Delivery{Type: pub.Type, ReplyTo: "q", Body: pub.Body}
	got, err := (classic{}).splitRequests(&d)
	if err != nil || len(got) != 3 {
		t.Fatalf("split: %v, %v", got, err)
	}
	var oddReq inRequest
	if (classic{}).decodeBatched(&d, &got[2], &oddReq) != nil || !maps.Equal(oddReq.meta, odd) {
		t.Errorf("metadata that JSON escapes came back %q; want %q", oddReq.meta, odd)
	}
	for i, want := range []string{"map[tenant:t1 traceparent:00-abc-def-01]", "map[]"} {
		var r inRequest
		if err := (classic{}).decodeBatched(&d, &got[i], &r); err != nil || fmt.Sprint(r.meta) != want {
			t.Errorf("entry %d: metadata %v, %v; want %s", i, r.meta, err, want)
		}
	}
}
