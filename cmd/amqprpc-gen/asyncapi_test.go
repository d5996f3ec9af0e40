package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

// The committed AsyncAPI documents of the examples are what amqprpc-gen
// writes (-asyncapi), an AsyncAPI 3.0.0 document with an operation for each
// method whose messages are its channel's. scripts/asyncapi.sh checks them
// against the AsyncAPI project's own parser.
func TestAsyncAPIOfExamples(t *testing.T) {
	for _, tc := range []struct {
		typ, dir, base string
		ops            map[string]string // operation -> the channel it sends on
		replies        map[string]int    // operation -> its reply messages
	}{
		{"Calculator", "../../examples/calc", "calc_amqprpc",
			map[string]string{"add": "requests", "div": "requests", "store": "requests", "clear": "fanout", "memory": "requests", "memory.gather": "fanout"},
			map[string]int{"add": 1, "div": 1, "memory": 1, "memory.gather": 1}},
		{"Inventory", "../../examples/inventory", "inventory_amqprpc",
			map[string]string{"list": "requests", "count": "requests", "list.credit": "credits"},
			map[string]int{"list": 2, "count": 1}},
	} {
		out, err := filepath.Abs(filepath.Join(tc.dir, tc.base+".go"))
		if err != nil {
			t.Fatal(err)
		}
		f, diags, err := build(tc.dir, nil, out, []string{tc.typ})
		if err != nil || len(diags) > 0 {
			t.Fatalf("%s: %v %v", tc.typ, err, diags)
		}
		doc, err := asyncapiFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if committed, err := os.ReadFile(filepath.Join(tc.dir, tc.base+".asyncapi.json")); err != nil || !bytes.Equal(committed, doc) {
			t.Fatalf("%s: the committed AsyncAPI document is not what -asyncapi writes (go generate ./examples/...): %v", tc.typ, err)
		}

		var d struct {
			AsyncAPI string `json:"asyncapi"`
			Info     struct{ Title, Version string }
			Channels map[string]struct {
				Messages map[string]json.RawMessage
			}
			Operations map[string]struct {
				Action  string
				Channel struct {
					Ref string `json:"$ref"`
				}
				Messages []struct {
					Ref string `json:"$ref"`
				}
				Reply *struct {
					Messages []struct {
						Ref string `json:"$ref"`
					}
				}
			}
		}
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		if d.AsyncAPI != "3.0.0" || d.Info.Title != tc.typ {
			t.Errorf("%s: asyncapi %q, title %q", tc.typ, d.AsyncAPI, d.Info.Title)
		}
		if len(d.Operations) != len(tc.ops) {
			t.Errorf("%s: %d operations, want %d", tc.typ, len(d.Operations), len(tc.ops))
		}
		// resolve finds the message a reference names, #/channels/<ch>/messages/<msg>.
		resolve := func(ref string) bool {
			ch, msg, ok := strings.Cut(strings.TrimPrefix(ref, "#/channels/"), "/messages/")
			_, found := d.Channels[ch].Messages[msg]
			return ok && found
		}
		for name, ch := range tc.ops {
			op, ok := d.Operations[tc.typ+"."+name]
			switch {
			case !ok:
				t.Errorf("%s: no operation for %s", tc.typ, name)
			case op.Action != "send" || op.Channel.Ref != "#/channels/"+tc.typ+"."+ch:
				t.Errorf("%s.%s: action %q on %s", tc.typ, name, op.Action, op.Channel.Ref)
			case len(op.Messages) != 1 && ch != "credits", len(op.Messages) != 2 && ch == "credits",
				!resolve(op.Messages[0].Ref) || !strings.HasPrefix(op.Messages[0].Ref, op.Channel.Ref+"/"):
				t.Errorf("%s.%s: request messages %v", tc.typ, name, op.Messages)
			case ch == "requests" && refOf(d.Channels[tc.typ+".server"].Messages[name+".request"]) != op.Messages[0].Ref:
				t.Errorf("%s.%s: the request is not on the channel to one server: %s", tc.typ, name, d.Channels[tc.typ+".server"].Messages[name+".request"])
			case tc.replies[name] == 0 && op.Reply != nil, tc.replies[name] > 0 && (op.Reply == nil || len(op.Reply.Messages) != tc.replies[name]):
				t.Errorf("%s.%s: reply %+v, want %d messages", tc.typ, name, op.Reply, tc.replies[name])
			case op.Reply != nil:
				for _, m := range op.Reply.Messages {
					if !resolve(m.Ref) {
						t.Errorf("%s.%s: reply message %s is not in its channel", tc.typ, name, m.Ref)
					}
					ch, msg, _ := strings.Cut(strings.TrimPrefix(m.Ref, "#/channels/"), "/messages/")
					var reply struct {
						Headers struct{ Required []string }
					}
					json.Unmarshal(d.Channels[ch].Messages[msg], &reply)
					if !slices.Contains(reply.Headers.Required, "correlation_id") {
						t.Errorf("%s.%s: reply message %s requires headers %v", tc.typ, name, m.Ref, reply.Headers.Required)
					}
				}
			}
		}
	}
}

// refOf is the $ref of a reference object, "" for anything else.
func refOf(raw json.RawMessage) string {
	var r struct {
		Ref string `json:"$ref"`
	}
	json.Unmarshal(raw, &r)
	return r.Ref
}

// -asyncapi-oslo refuses an interface with a stream, which oslo.messaging's
// protocol does not have, and then writes nothing: not the code either.
func TestAsyncAPIOsloRefusesStreams(t *testing.T) {
	src, err := os.ReadFile("../../examples/inventory/inventory.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModule(t, "example.com/inventory", &txtar.Archive{Files: []txtar.File{{Name: "inventory.go", Data: src}}})
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	var stdout, stderr bytes.Buffer
	err = run([]string{"-type", "Inventory", "-asyncapi-oslo", filepath.Join(dir, "oslo.json"), dir}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "Inventory.List is a stream") {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, name := range []string{"oslo.json", "inventory_amqprpc.go"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("the generator failed but wrote %s", name)
		}
	}
}
