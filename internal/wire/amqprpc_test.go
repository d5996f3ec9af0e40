package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
)

func TestClassicEncodeRequest(t *testing.T) {
	var pub amqp.Publishing
	args := struct {
		V1 int `json:"v1"`
		V2 int `json:"v2"`
	}{2, 3}
	if err := (classic{}).EncodeRequest(&pub, &Out{MsgID: "id-1", Method: "add", Args: &args, ReplyTo: "amq.gen-reply"}); err != nil {
		t.Fatal(err)
	}
	if want := `{"method":"add","args":{"v1":2,"v2":3},"msg_id":"id-1"}`; string(pub.Body) != want {
		t.Errorf("body = %s; want %s", pub.Body, want)
	}
	if pub.CorrelationId != "id-1" || pub.ReplyTo != "amq.gen-reply" || pub.ContentType != "application/json" {
		t.Errorf("properties = correlation_id %q, reply_to %q, content_type %q", pub.CorrelationId, pub.ReplyTo, pub.ContentType)
	}
	if err := (classic{}).EncodeRequest(&pub, &Out{MsgID: "id-2", Method: "f", Args: map[string]any{"c": make(chan int)}}); err == nil {
		t.Error("encoding a channel argument succeeded; want an error")
	}
}

func TestClassicDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		d       amqp.Delivery
		wantErr error
		want    In
	}{{
		name: "reply_to",
		d:    amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Body: []byte(`{"method":"add","args":{"v1":1},"msg_id":"m1"}`)},
		want: In{MsgID: "c1", Method: "add", Args: []byte(`{"v1":1}`), Reply: Route{Key: "q1"}},
	}, {
		name: "classic msg_id",
		d:    amqp.Delivery{Body: []byte(`{"method":"add","args":{},"msg_id":"m1","_context_user":"x"}`)},
		want: In{MsgID: "m1", Method: "add", Args: []byte(`{}`), Reply: Route{Exchange: "m1", Key: "m1", Declare: true}},
	}, {
		name: "direct reply-to",
		d:    amqp.Delivery{CorrelationId: "c1", ReplyTo: "amq.rabbitmq.reply-to.g1h2.key", Body: []byte(`{"method":"ping"}`)},
		want: In{MsgID: "c1", Method: "ping", Reply: Route{Key: "amq.rabbitmq.reply-to.g1h2.key", Direct: true}},
	}, {
		name: "no args",
		d:    amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Body: []byte(`{"method":"ping"}`)},
		want: In{MsgID: "c1", Method: "ping", Reply: Route{Key: "q1"}},
	}, {
		name: "null args",
		d:    amqp.Delivery{Body: []byte(`{"method":"ping","args":null}`)},
		want: In{Method: "ping", Args: []byte(`null`)},
	}, {
		name:    "not JSON",
		d:       amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Body: []byte(`nope`)},
		wantErr: ErrNotJSON,
		want:    In{MsgID: "c1", Reply: Route{Key: "q1"}},
	}, {
		name:    "no method",
		d:       amqp.Delivery{Body: []byte(`{"args":{},"msg_id":"m1"}`)},
		wantErr: ErrNoMethod,
		want:    In{MsgID: "m1", Reply: Route{Exchange: "m1", Key: "m1", Declare: true}},
	}, {
		name:    "args not an object",
		d:       amqp.Delivery{Body: []byte(`{"method":"add","args":[1,2]}`)},
		wantErr: ErrBadArgs,
		want:    In{Method: "add"},
	}, {
		name:    "headers no library reads",
		d:       amqp.Delivery{CorrelationId: "c1", ReplyTo: "q1", Headers: amqp.Table{amqpio.UnreadableHeader: "why"}, Body: []byte(`{"method":"ping"}`)},
		wantErr: ErrUnreadableHeaders,
		want:    In{MsgID: "c1", Method: "ping", Reply: Route{Key: "q1"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var got In
			err := (classic{}).DecodeRequest(&tc.d, &got)
			if !errors.Is(err, tc.wantErr) || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("error = %v; want %v, a malformed message", err, tc.wantErr)
			}
			if got.MsgID != tc.want.MsgID || got.Method != tc.want.Method || string(got.Args) != string(tc.want.Args) || got.Reply != tc.want.Reply {
				t.Errorf("got %+v (args %s); want %+v (args %s)", got, got.Args, tc.want, tc.want.Args)
			}
		})
	}
}

func TestClassicReplies(t *testing.T) {
	var pub amqp.Publishing
	if err := (classic{}).EncodeReply(&pub, "c1", "", 5, nil); err != nil || string(pub.Body) != `{"result":5}` || pub.CorrelationId != "c1" || pub.Type != ReplyType {
		t.Fatalf("result reply = %s (correlation_id %q, type %q), %v", pub.Body, pub.CorrelationId, pub.Type, err)
	}
	var n int
	if f, err := (classic{}).DecodeReply(&Reply{Body: pub.Body}, &n); f != nil || err != nil || n != 5 {
		t.Fatalf("decoded result = %d, %v, %v; want 5", n, f, err)
	}

	if err := (classic{}).EncodeReply(&pub, "c1", "", nil, &Failure{Code: "internal", Message: "boom", Module: "not", Class: "sent"}); err != nil {
		t.Fatal(err)
	}
	if want := `{"failure":{"code":"internal","message":"boom"}}`; string(pub.Body) != want {
		t.Fatalf("failure reply = %s; want %s", pub.Body, want)
	}
	if f, err := (classic{}).DecodeReply(&Reply{Body: pub.Body}, &n); err != nil || f == nil || f.Code != "internal" || f.Message != "boom" {
		t.Fatalf("decoded failure = %+v, %v; want the failure sent", f, err)
	}

	if err := (classic{}).EncodeReply(&pub, "c1", "", make(chan int), nil); err == nil {
		t.Error("encoding a channel result succeeded; want an error")
	}
	for _, body := range []string{`nope`, `{"result":"five"}`} {
		if _, err := (classic{}).DecodeReply(&Reply{Body: []byte(body)}, &n); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeReply(%s) = %v; want ErrMalformed", body, err)
		}
	}
	if _, err := (classic{}).DecodeReply(&Reply{Body: []byte(`{"result":null}`)}, nil); err != nil {
		t.Errorf("DecodeReply(null result, nil) = %v", err)
	}

	// A reply alone says its id, its server and that the server reads
	// batches; one of another implementation's, without the type, does not.
	pub = amqp.Publishing{}
	(classic{}).EncodeReply(&pub, "c2", "server-a", 1, nil)
	var got []*Reply
	each := func(r *Reply) { got = append(got, r) }
	if err := (classic{}).SplitReplies(&amqp.Delivery{CorrelationId: pub.CorrelationId, Type: pub.Type, Headers: pub.Headers, Body: pub.Body}, each); err != nil ||
		len(got) != 1 || got[0].ID != "c2" || got[0].Server != "server-a" || !got[0].ReadsBatches || got[0].Kind != Final {
		t.Fatalf("SplitReplies = %+v, %v", got, err)
	}
	got = nil
	if (classic{}).SplitReplies(&amqp.Delivery{CorrelationId: "c3", Body: []byte(`{"result":1}`)}, each); got[0].ReadsBatches {
		t.Errorf("a reply without the type says its server reads batches")
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
		if got := Expiration(d); got != want {
			t.Errorf("Expiration(%v) = %q; want %q", d, got, want)
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
		if got := Compatible(tc.have, tc.need); got != tc.want {
			t.Errorf("Compatible(%q, %q) = %v; want %v", tc.have, tc.need, got, tc.want)
		}
	}
}

// TestMetadataOnTheWire: metadata goes as headers of a request alone, as
// "headers" of a request in a batch, and comes back the same; keys of the
// runtime's and the broker's are neither sent nor read as metadata, nor
// keys that do not fit an AMQP short string.
func TestMetadataOnTheWire(t *testing.T) {
	md := map[string]string{"traceparent": "00-abc-def-01", "tenant": "t1", "amqprpc-deadline": "forged", "x-delivery-count": "forged"}
	var pub amqp.Publishing
	if err := (classic{}).EncodeRequest(&pub, &Out{MsgID: "m", Method: "add", Meta: md, Deadline: time.UnixMilli(1767225600000)}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pub.Headers) != "map[amqprpc-deadline:1767225600000 tenant:t1 traceparent:00-abc-def-01]" {
		t.Errorf("headers %v", pub.Headers)
	}
	var r In
	pub.Headers["x-delivery-count"] = int64(2) // the broker's
	pub.Headers["x-first-death-reason"] = "rejected"
	pub.Headers["count"] = int32(7) // not a string
	if err := (classic{}).DecodeRequest(&amqp.Delivery{Headers: pub.Headers, Body: pub.Body}, &r); err != nil || fmt.Sprint(r.Meta) != "map[tenant:t1 traceparent:00-abc-def-01]" {
		t.Errorf("decoded metadata %v, %v", r.Meta, err)
	}

	odd := map[string]string{"odd\"key\\": "line\nü\x01", "": ""}
	long := map[string]string{string(make([]byte, MaxShortString+1)): "v", "kept": "v"}
	reqs := []BatchedRequest{{MsgID: "a", Meta: md, Body: []byte(`{"method":"add"}`)}, {MsgID: "b", Body: []byte(`{"method":"add"}`)},
		{MsgID: "c", Meta: odd, Body: []byte(`{"method":"add"}`)}, {MsgID: "d", Meta: long, Body: []byte(`{"method":"add"}`)}}
	pub = amqp.Publishing{}
	if err := (classic{}).EncodeRequests(&pub, BatchID("1"), "q", reqs); err != nil {
		t.Fatal(err)
	}
	d := amqp.Delivery{Type: pub.Type, ReplyTo: "q", Body: pub.Body}
	got, err := (classic{}).SplitRequests(&d)
	if err != nil || len(got) != 4 {
		t.Fatalf("split: %v, %v", got, err)
	}
	var oddReq In
	if (classic{}).DecodeBatched(&d, &got[2], &oddReq) != nil || !maps.Equal(oddReq.Meta, odd) {
		t.Errorf("metadata that JSON escapes came back %q; want %q", oddReq.Meta, odd)
	}
	for i, want := range []string{"map[tenant:t1 traceparent:00-abc-def-01]", "map[]", "", "map[kept:v]"} {
		if want == "" {
			continue
		}
		var r In
		if err := (classic{}).DecodeBatched(&d, &got[i], &r); err != nil || fmt.Sprint(r.Meta) != want {
			t.Errorf("entry %d: metadata %v, %v; want %s", i, r.Meta, err, want)
		}
	}
}

func TestClassicBatchOfReplies(t *testing.T) {
	odd := "id \"quoted\" \\ \x01 é \xff"
	replies := []BatchedReply{{"c1", []byte(`{"result":5}`)}, {odd, []byte(`{"failure":{"code":"internal","message":"boom"}}`)}, {"c3", []byte(`{"result":null}`)}}
	var pub amqp.Publishing
	if err := (classic{}).EncodeReplies(&pub, replies); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(pub.Body) || pub.Type != BatchType || pub.CorrelationId != "" || pub.ContentType != contentTypeJSON {
		t.Fatalf("batch = %s, type %q, correlation_id %q, content_type %q", pub.Body, pub.Type, pub.CorrelationId, pub.ContentType)
	}
	var got []BatchedReply
	err := (classic{}).SplitReplies(&amqp.Delivery{Type: pub.Type, ContentType: pub.ContentType, Body: pub.Body}, func(r *Reply) {
		if !r.ReadsBatches {
			t.Errorf("reply %q of a batch does not say its server reads batches", r.ID)
		}
		got = append(got, BatchedReply{r.ID, r.Body})
	})
	if err != nil {
		t.Fatalf("SplitReplies = %v", err)
	}
	// The odd id's invalid UTF-8 comes back as U+FFFD, as JSON has it.
	want := slices.Clone(replies)
	want[1].MsgID = "id \"quoted\" \\ \x01 é \uFFFD"
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("split replies = %q\nwant %q", got, want)
	}

	// One reply goes alone, as EncodeReply makes it.
	pub = amqp.Publishing{}
	if err := (classic{}).EncodeReplies(&pub, replies[:1]); err != nil || pub.Type != ReplyType || pub.CorrelationId != "c1" || string(pub.Body) != `{"result":5}` {
		t.Fatalf("a batch of one = %s, type %q, correlation_id %q, %v; want the reply alone", pub.Body, pub.Type, pub.CorrelationId, err)
	}
	for _, body := range []string{`{"result":5}`, `[{"id":1}]`, `nope`} {
		if err := (classic{}).SplitReplies(&amqp.Delivery{Type: BatchType, Body: []byte(body)}, func(*Reply) {}); !errors.Is(err, ErrMalformed) {
			t.Errorf("SplitReplies(%s) = %v; want ErrMalformed", body, err)
		}
	}
}

func TestClassicBatchOfRequests(t *testing.T) {
	deadline := time.UnixMilli(1767225600123)
	reqs := []BatchedRequest{
		{MsgID: "a", Deadline: deadline, Body: []byte(`{"method":"add","args":{"v1":2,"v2":3},"msg_id":"a","batch_replies":true}`)},
		{MsgID: "b\"", Deadline: deadline.Add(time.Second), Body: []byte(`{"method":"ping","msg_id":"b\""}`)},
		{MsgID: "c", Body: []byte(`{"method":"ping"}`)},
	}
	var pub amqp.Publishing
	if err := (classic{}).EncodeRequests(&pub, BatchID("x"), "amq.gen-q", reqs); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(pub.Body) || pub.Type != RequestsType || pub.ReplyTo != "amq.gen-q" || pub.Headers[DeadlineHeader] != deadline.Add(time.Second).UnixMilli() {
		t.Fatalf("batch = %s, type %q, reply_to %q, headers %v; want the latest deadline in the header", pub.Body, pub.Type, pub.ReplyTo, pub.Headers)
	}
	if !IsBatchID(pub.CorrelationId) || IsBatchID("a") {
		t.Fatalf("batch correlation_id %q; want a batch id, which no call's id is", pub.CorrelationId)
	}
	d := amqp.Delivery{Type: pub.Type, ReplyTo: pub.ReplyTo, Headers: pub.Headers, Body: pub.Body}
	got, err := (classic{}).SplitRequests(&d)
	if !(classic{}).IsBatch(&d) || err != nil || len(got) != 3 {
		t.Fatalf("SplitRequests = %d requests, %v; want 3", len(got), err)
	}
	var r In
	if err := (classic{}).DecodeBatched(&d, &got[0], &r); err != nil || r.MsgID != "a" || !r.Deadline.Equal(deadline) || r.Method != "add" || !r.Batch || r.Reply.Key != "amq.gen-q" {
		t.Fatalf("first request = %+v, %v", r, err)
	}
	if got[1].MsgID != `b"` || !got[2].Deadline.IsZero() {
		t.Fatalf("requests = %+v", got)
	}
	if ids := (classic{}).ReturnedIDs(&amqp.Return{Type: pub.Type, Body: pub.Body}); fmt.Sprint(ids) != fmt.Sprint([]string{"a", `b"`, "c"}) {
		t.Fatalf("ReturnedIDs(the batch) = %q", ids)
	}
	if ids := (classic{}).ReturnedIDs(&amqp.Return{CorrelationId: "x"}); fmt.Sprint(ids) != "[x]" {
		t.Fatalf("ReturnedIDs(one request) = %q", ids)
	}
	if _, err := (classic{}).SplitRequests(&amqp.Delivery{Type: RequestsType, Body: []byte(`{"method":"add"}`)}); err == nil {
		t.Fatal("SplitRequests(not an array) succeeded; want an error")
	}
	if (classic{}).IsBatch(&amqp.Delivery{Body: []byte(`[]`)}) {
		t.Fatal("a message without the batch type is a batch")
	}
}

// TestDirectNode: what can be known of a direct reply-to address without
// the broker: whether a broker could have made it, and its node.
func TestDirectNode(t *testing.T) {
	const live = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAADGgAAAABrFSjB.gj3BiMnRfRGmKCyM62fiSA==" // RabbitMQ 3.10.8's
	if node, err := DirectNode(live); err != nil || node != "reply@9248884/Xv" {
		t.Fatalf("DirectNode(a broker's address) = %q, %v; want reply@9248884/Xv", node, err)
	}
	// RabbitMQ 3.10 closed the connection that published to the first
	// three, and dropped the reply to the others.
	for _, bad := range []string{
		"amq.rabbitmq.reply-to.g2.AAAA",
		"amq.rabbitmq.reply-to.gw==.AAAA",
		"amq.rabbitmq.reply-to.g1h2.AAAA",
		"amq.rabbitmq.reply-to.garbage",
		"amq.rabbitmq.reply-to",
		"amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAADGgAAAABrFSjB",
		"amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAADGgAAAABrFSjB.not base64!",
		"amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAADGgAAAABrFSjBAAAA.gj3BiMnRfRGmKCyM62fiSA==", // more than a pid
	} {
		if node, err := DirectNode(bad); err == nil {
			t.Errorf("DirectNode(%q) = %q; want an error", bad, node)
		}
	}
	if !IsDirectReplyTo(live) || IsDirectReplyTo("amq.gen-q") {
		t.Error("IsDirectReplyTo")
	}
}

// FuzzDecodeRequest feeds arbitrary bodies and properties to the server's
// request decoding: it must never panic, and what it accepts must be a
// request it can dispatch. Seeds are in testdata/fuzz/FuzzDecodeRequest;
// run with go test -fuzz=FuzzDecodeRequest ./internal/wire.
func FuzzDecodeRequest(f *testing.F) {
	for _, body := range []string{
		`{"method":"add","args":{"v1":2,"v2":3},"msg_id":"m1"}`,
		`{"method":"add","args":{"v1":2,"v2":3},"version":"1.1"}`,
		`{"method":"ping"}`,
		`{"method":"","args":{}}`,
		`{"args":[1,2]}`,
		`{"method":"add","args":"x"}`,
		`{"method":{"nested":true}}`,
		`[]`,
		`null`,
		``,
		`{"method":"add","args":{"v1":1e999}}`,
		"{\"method\":\"\\ud800\"}",
	} {
		f.Add([]byte(body), "corr", "reply", int64(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, corr, replyTo string, deadline int64) {
		d := amqp.Delivery{Body: body, CorrelationId: corr, ReplyTo: replyTo}
		if deadline != 0 {
			d.Headers = amqp.Table{DeadlineHeader: deadline}
		}
		var r In
		if err := (classic{}).DecodeRequest(&d, &r); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not a malformed message", err)
			}
			return
		}
		if r.Method == "" {
			t.Fatalf("accepted a request without a method: %q", body)
		}
		if replyTo != "" && r.Reply.Key != replyTo {
			t.Fatalf("reply route %+v ignores reply_to %q", r.Reply, replyTo)
		}
		if len(r.Args) > 0 && !json.Valid(r.Args) {
			t.Fatalf("accepted invalid JSON arguments %q", r.Args)
		}
	})
}

// FuzzSplitRequests feeds arbitrary bodies to the server's decoding of a
// batch of requests: it must never panic, and each request it accepts must
// decode as a request alone would, or fail.
func FuzzSplitRequests(f *testing.F) {
	for _, body := range []string{
		`[{"id":"a","deadline":1767225600000,"request":{"method":"add","args":{"v1":2,"v2":3}}},{"id":"b","deadline":0,"request":{"method":"ping"}}]`,
		`[{"id":"a","request":null},{}]`,
		`[{"id":1}]`,
		`[]`,
		`{}`,
		`[{"id":"a","deadline":-5,"request":"x"}]`,
		``,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d := amqp.Delivery{Type: RequestsType, Body: body, ReplyTo: "reply"}
		if !(classic{}).IsBatch(&d) {
			t.Fatal("a message of type amqprpc.requests is not a batch")
		}
		reqs, err := (classic{}).SplitRequests(&d)
		if err != nil {
			return
		}
		for i := range reqs {
			for k := range reqs[i].Meta {
				if !metadataKey(k) {
					t.Fatalf("entry %d of %q has metadata key %q", i, body, k)
				}
			}
			var r In
			if err := (classic{}).DecodeBatched(&d, &reqs[i], &r); err != nil {
				continue
			}
			if r.Method == "" || r.MsgID != reqs[i].MsgID || r.Reply.Key != "reply" {
				t.Fatalf("request %d of %q decoded as %+v", i, body, r)
			}
		}
	})
}

// FuzzBatchMetadata: metadata of any valid UTF-8 keys and values, sent in
// a batch of requests, comes back as it was sent, less the keys that are
// not metadata, and the batch stays valid JSON. Run with go test
// -fuzz=FuzzBatchMetadata ./internal/wire.
func FuzzBatchMetadata(f *testing.F) {
	f.Add("tenant", "t1", "traceparent", "00-abc-def-01")
	f.Add("odd\"key\\", "line\nü\x01", "", "")
	f.Add("x-forged", "v", "amqprpc-deadline", "1")
	f.Add("<html>", "&amp;\u2028", "k", "\x7f")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		if !utf8.ValidString(k1) || !utf8.ValidString(v1) || !utf8.ValidString(k2) || !utf8.ValidString(v2) {
			t.Skip("JSON strings are UTF-8")
		}
		md := map[string]string{k1: v1, k2: v2}
		var pub amqp.Publishing
		reqs := []BatchedRequest{{MsgID: "a", Meta: md, Body: []byte(`{"method":"add"}`)}, {MsgID: "b", Body: []byte(`{"method":"add"}`)}}
		if err := (classic{}).EncodeRequests(&pub, BatchID("1"), "q", reqs); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(pub.Body) {
			t.Fatalf("invalid JSON: %s", pub.Body)
		}
		d := amqp.Delivery{Type: pub.Type, ReplyTo: "q", Body: pub.Body}
		got, err := (classic{}).SplitRequests(&d)
		if err != nil || len(got) != 2 {
			t.Fatalf("split: %v, %v", got, err)
		}
		want := map[string]string{}
		for k, v := range md {
			if metadataKey(k) {
				want[k] = v
			}
		}
		var r In
		if err := (classic{}).DecodeBatched(&d, &got[0], &r); err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 && len(r.Meta) == 0 {
			return
		}
		if !maps.Equal(r.Meta, want) {
			t.Fatalf("metadata %q came back %q", want, r.Meta)
		}
	})
}

type benchArgs struct {
	V1 int `json:"v1"`
	V2 int `json:"v2"`
}

// BenchmarkEncodeRequest is what a client does to send a call: encode it.
func BenchmarkEncodeRequest(b *testing.B) {
	r := Out{MsgID: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e", Method: "add", Args: &benchArgs{2, 3}, ReplyTo: "amq.gen-1234567890abcdef", Deadline: time.Now().Add(time.Minute)}
	b.ReportAllocs()
	for b.Loop() {
		var pub amqp.Publishing
		if err := (classic{}).EncodeRequest(&pub, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequest is what a server does to read a request.
func BenchmarkDecodeRequest(b *testing.B) {
	var pub amqp.Publishing
	out := Out{MsgID: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e", Method: "add", Args: &benchArgs{2, 3}, ReplyTo: "amq.gen-1234567890abcdef", Deadline: time.Now().Add(time.Hour)}
	if err := (classic{}).EncodeRequest(&pub, &out); err != nil {
		b.Fatal(err)
	}
	d := amqp.Delivery{Body: pub.Body, CorrelationId: pub.CorrelationId, ReplyTo: pub.ReplyTo, Headers: pub.Headers}
	b.ReportAllocs()
	for b.Loop() {
		var r In
		if err := (classic{}).DecodeRequest(&d, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSplitRequests is what a server does with a batch of 16
// requests, each with a trace context, before their methods run.
func BenchmarkSplitRequests(b *testing.B) {
	reqs := make([]BatchedRequest, 16)
	for i := range reqs {
		var pub amqp.Publishing
		out := Out{MsgID: fmt.Sprintf("6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d%02d", i), Method: "add", Args: &benchArgs{i, 3}, ReplyTo: "amq.gen-1", BatchReplies: true}
		if err := (classic{}).EncodeRequest(&pub, &out); err != nil {
			b.Fatal(err)
		}
		reqs[i] = BatchedRequest{MsgID: out.MsgID, Deadline: time.Now().Add(time.Hour), Body: pub.Body,
			Meta: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	}
	var pub amqp.Publishing
	if err := (classic{}).EncodeRequests(&pub, "batch:1", "amq.gen-1", reqs); err != nil {
		b.Fatal(err)
	}
	d := amqp.Delivery{Body: pub.Body, Type: pub.Type, CorrelationId: pub.CorrelationId, ReplyTo: pub.ReplyTo, Headers: pub.Headers}
	b.ReportAllocs()
	for b.Loop() {
		batch, err := (classic{}).SplitRequests(&d)
		if err != nil || len(batch) != len(reqs) {
			b.Fatal(len(batch), err)
		}
		for i := range batch {
			var r In
			if err := (classic{}).DecodeBatched(&d, &batch[i], &r); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDecodeReply is what a client does with a reply.
func BenchmarkDecodeReply(b *testing.B) {
	r := Reply{ID: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e", Body: []byte(`{"result":5}`)}
	b.ReportAllocs()
	for b.Loop() {
		var n int
		if f, err := (classic{}).DecodeReply(&r, &n); f != nil || err != nil || n != 5 {
			b.Fatal(n, f, err)
		}
	}
}

// TestRepliesSayTheQueueLimit: the replies of a protocol whose topic queue
// has a limit say so, alone or in batches, and a client reads it; those of
// one without do not.
func TestRepliesSayTheQueueLimit(t *testing.T) {
	for _, limit := range []int{0, 100} {
		p := Amqprpc(AmqprpcTopology{Exchange: "x", MaxLength: limit})
		var one, many amqp.Publishing
		if err := p.EncodeReply(&one, "c1", "", 5, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Batches.EncodeReplies(&many, []BatchedReply{{MsgID: "a", Body: []byte(`{"result":1}`)}, {MsgID: "b", Body: []byte(`{"result":2}`)}}); err != nil {
			t.Fatal(err)
		}
		for _, pub := range []amqp.Publishing{one, many} {
			d := amqp.Delivery{Type: pub.Type, Headers: pub.Headers, CorrelationId: pub.CorrelationId, Body: pub.Body}
			n := 0
			if err := p.SplitReplies(&d, func(r *Reply) {
				n++
				if r.Bounded != (limit > 0) {
					t.Errorf("limit %d: a reply (type %s) says bounded %v", limit, pub.Type, r.Bounded)
				}
			}); err != nil || n == 0 {
				t.Errorf("limit %d: %d replies, %v", limit, n, err)
			}
		}
	}
}
