package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var scanSeeds = []string{
	`{"method":"add","args":{"v1":2,"v2":3},"msg_id":"6f0a8f4e","batch_replies":true}`,
	` { "method" : "add" , "args" : { "a" : [1, -2.5e+3, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"] } , "version" : "1.2" } `,
	`{"Method":"add"}`,
	`{"method":"add","method":"sub"}`,
	`{"method":"add","extra":{"deep":[[[[{}]]]]},"args":null}`,
	`{"method":"caf\u00e9"}`,
	"{\"method\":\"caf\xc3\xa9\"}",
	`{"method":"add","batch_replies":null}`,
	`{"method":"add"} x`,
	`{"method":"add",}`,
	`[{"id":"a","deadline":1767225600000,"headers":{"traceparent":"00-1","t":"x"},"request":{"method":"add","args":{}}},{"id":"b","deadline":0,"request":{}}]`,
	`[{"id":"a","deadline":1.5,"request":{}}]`,
	`[{"id":"a","deadline":99999999999999999999,"request":{}}]`,
	`[{"id":"a","headers":{"k":"1","k":"2"},"request":{}}]`,
	`[{"id":"a","headers":{"k":1},"request":{}}]`,
	`[{"ID":"a"}]`,
	`[null]`,
	`[]`,
	` [ ] `,
	`[{"id":"a","deadline":-0,"request":01}]`,
	`"\ud800"`,
	`-`, `0.`, `1e`, `[1,]`, `{"a" 1}`, `tru`,
}

// FuzzScanClassicRequest: whatever the reader takes as a request,
// encoding/json reads as the same request.
func FuzzScanClassicRequest(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got classicRequest
		if !got.scan(body) {
			return
		}
		var want classicRequest
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("scan took %q, which encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scan read %q as %+v; encoding/json as %+v", body, got, want)
		}
	})
}

// FuzzScanRequestEntries: whatever the reader takes as a batch of
// requests, encoding/json reads as the same batch.
func FuzzScanRequestEntries(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := scanRequestEntries(body)
		if !ok {
			return
		}
		var want []classicRequestEntry
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("scan took %q, which encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scan read %q as %+v; encoding/json as %+v", body, got, want)
		}
	})
}

// FuzzValueEnd: the reader finds a value where encoding/json finds valid
// JSON, and none where it does not (short of nesting deeper than it follows).
func FuzzValueEnd(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end, ok := skipValue(b, skipSpace(b, 0), 0)
		got := ok && onlySpace(b, end)
		if want := json.Valid(b); got != want && (want && strings.Count(string(b), "[")+strings.Count(string(b), "{") < maxScanDepth) {
			t.Fatalf("skipValue(%q) = %d, %v; json.Valid %v", b, end, ok, want)
		} else if got && !want {
			t.Fatalf("skipValue took %q, which is not JSON", b)
		}
	})
}

// TestScanTakesWhatPeersWrite: the reader takes the requests and batches
// that amqprpc's clients write, and leaves to encoding/json what it must.
func TestScanTakesWhatPeersWrite(t *testing.T) {
	var m classicRequest
	for body, want := range map[string]bool{
		`{"method":"add","args":{"v1":2,"v2":3},"msg_id":"6f0a","batch_replies":true}`: true,
		`{"method":"add","args":{"s":"caf\u00e9"}}`:                                    true, // an escape in the arguments: taken as they are
		`{"method":"caf\u00e9"}`:                                                       false,
		`{"Method":"add"}`:                                                             false,
		`{"method":"add","method":"sub"}`:                                              false,
		`{"method":null}`:                                                              false,
	} {
		if got := m.scan([]byte(body)); got != want {
			t.Errorf("scan(%s) = %v, want %v", body, got, want)
		}
	}
	if _, ok := scanRequestEntries([]byte(`[{"id":"a","deadline":1767225600000,"headers":{"traceparent":"00-1"},"request":{"method":"add"}}]`)); !ok {
		t.Error("a batch as clients write it is left to encoding/json")
	}
}

// FuzzMembersOf: the members of an object are what encoding/json reads
// into a map of raw values, the last of a key given twice.
func FuzzMembersOf(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"method":"add","_context_user":"u","_context_user":{"a":1},"caf\u00e9":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := membersOf(b)
		var want map[string]json.RawMessage
		jerr := json.Unmarshal(b, &want)
		if (err == nil) != (jerr == nil) {
			t.Fatalf("membersOf(%q): %v; encoding/json: %v", b, err, jerr)
		}
		if err != nil {
			return
		}
		got := map[string]json.RawMessage{}
		for _, m := range ms {
			got[string(m.key)] = m.value
		}
		if len(got) != len(want) {
			t.Fatalf("membersOf(%q) = %q; encoding/json %q", b, got, want)
		}
		for k, v := range want {
			if string(got[k]) != string(v) {
				t.Fatalf("membersOf(%q)[%q] = %q; encoding/json %q", b, k, got[k], v)
			}
		}
	})
}

// FuzzScanOsloHead: whatever the reader takes as the head of an oslo
// reply, encoding/json reads as the same.
func FuzzScanOsloHead(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"result": 5, "failure": null, "_msg_id": "m", "ending": true}`))
	f.Add([]byte(`{"failure": "{\"class\": \"ValueError\"}", "_msg_id": "m", "ending": false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got osloHead
		if !got.scan(b) {
			return
		}
		var want osloHead
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("scan took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scan read %q as %+v; encoding/json as %+v", b, got, want)
		}
	})
}

// FuzzScanReplyEntries: whatever the reader takes as a batch of replies,
// encoding/json reads as the same batch.
func FuzzScanReplyEntries(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[{"id":"a","reply":{"result":5}},{"id":"b","reply":{"failure":{"code":"not_found","message":"x"}}}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := scanReplyEntries(body)
		if !ok {
			return
		}
		var want []classicBatchEntry
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("scan took %q, which encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("scan read %q as %+v; encoding/json as %+v", body, got, want)
		}
	})
}
