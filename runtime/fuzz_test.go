package runtime

import (
	"encoding/json"
	"maps"
	"testing"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// FuzzDecodeRequest feeds arbitrary bodies and properties to the server's
// request decoding: it must never panic, and what it accepts must be a
// request it can dispatch. Seeds are in testdata/fuzz/FuzzDecodeRequest;
// run with go test -fuzz=FuzzDecodeRequest ./runtime.
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
			d.Headers = amqp.Table{deadlineHeader: deadline}
		}
		var r inRequest
		if err := (classic{}).decodeRequest(&d, &r); err != nil {
			return
		}
		if r.method == "" {
			t.Fatalf("accepted a request without a method: %q", body)
		}
		if replyTo != "" && r.reply.key != replyTo {
			t.Fatalf("reply route %+v ignores reply_to %q", r.reply, replyTo)
		}
		// The arguments decode into a method's argument struct or fail;
		// they never panic.
		var args struct {
			V1 int    `json:"v1"`
			S  string `json:"s"`
		}
		_ = decodeArgs(r.args, &args)
		if len(r.args) > 0 && !json.Valid(r.args) {
			t.Fatalf("accepted invalid JSON arguments %q", r.args)
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
		d := amqp.Delivery{Type: requestsType, Body: body, ReplyTo: "reply"}
		if !(classic{}).isBatch(&d) {
			t.Fatal("a message of type amqprpc.requests is not a batch")
		}
		reqs, err := (classic{}).splitRequests(&d)
		if err != nil {
			return
		}
		for i := range reqs {
			var r inRequest
			if err := (classic{}).decodeBatched(&d, &reqs[i], &r); err != nil {
				continue
			}
			if r.method == "" || r.msgID != reqs[i].msgID || r.reply.key != "reply" {
				t.Fatalf("request %d of %q decoded as %+v", i, body, r)
			}
		}
	})
}

// FuzzBatchMetadata: metadata of any valid UTF-8 keys and values, sent in
// a batch of requests, comes back as it was sent, less the reserved keys,
// and the batch stays valid JSON. Run with go test -fuzz=FuzzBatchMetadata
// ./runtime.
func FuzzBatchMetadata(f *testing.F) {
	f.Add("tenant", "t1", "traceparent", "00-abc-def-01")
	f.Add("odd\"key\\", "line\nü\x01", "", "")
	f.Add("x-forged", "v", "amqprpc-deadline", "1")
	f.Add("<html>", "&amp;\u2028", "k", "\x7f")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		if !utf8.ValidString(k1) || !utf8.ValidString(v1) || !utf8.ValidString(k2) || !utf8.ValidString(v2) {
			t.Skip("JSON strings are UTF-8")
		}
		md := Metadata{k1: v1, k2: v2}
		var pub amqp.Publishing
		reqs := []batchedRequest{{msgID: "a", meta: md, body: []byte(`{"method":"add"}`)}, {msgID: "b", body: []byte(`{"method":"add"}`)}}
		if err := (classic{}).encodeRequests(&pub, "q", reqs); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(pub.Body) {
			t.Fatalf("invalid JSON: %s", pub.Body)
		}
		d := amqp.Delivery{Type: pub.Type, ReplyTo: "q", Body: pub.Body}
		got, err := (classic{}).splitRequests(&d)
		if err != nil || len(got) != 2 {
			t.Fatalf("split: %v, %v", got, err)
		}
		want := Metadata{}
		for k, v := range md {
			if !reservedHeader(k) {
				want[k] = v
			}
		}
		var r inRequest
		if err := (classic{}).decodeBatched(&d, &got[0], &r); err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 && len(r.meta) == 0 {
			return
		}
		if !maps.Equal(r.meta, want) {
			t.Fatalf("metadata %q came back %q", want, r.meta)
		}
	})
}
