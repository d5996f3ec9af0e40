package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/examples/inventory"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// The examples' AsyncAPI documents describe what goes on the wire: the
// calc and inventory examples' servers and clients run every kind of
// request (calls, one to one server, a declared error, a cast, a fanout,
// a gather, a stream with credits) in a vhost of their own whose messages
// RabbitMQ's firehose records, and scripts/asyncapi.sh -messages checks
// each against the documents' schemas, headers included. It needs the
// tests' own broker node (make test), to trace a vhost and delete it.
func TestAsyncAPIOnTheWire(t *testing.T) {
	if os.Getenv("AMQPRPC_CLUSTER_DIR") == "" {
		t.Skip("not the tests' own broker node (make test starts one): no vhost to trace")
	}
	base := os.Getenv("AMQP_URL")
	vhost := fmt.Sprintf("asyncapi-%d", time.Now().UnixNano())
	ctl := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("../../scripts/cluster.sh", append([]string{"ctl", "1"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ctl("add_vhost", vhost)
	t.Cleanup(func() { exec.Command("../../scripts/cluster.sh", "ctl", "1", "delete_vhost", vhost).Run() })
	ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	ctl("trace_on", "-p", vhost)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + vhost
	broker := u.String()

	records := captureFirehose(t, broker)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"a", "b"} {
		s := runtime.NewServer(broker, calc.Topic, runtime.WithServerName(name))
		calc.RegisterCalculatorServer(s, new(calc.Machine))
		testsvc.Serve(t, s, "", calc.Topic) // the vhost goes with the test
	}
	s := runtime.NewServer(broker, inventory.Topic, runtime.WithServerName("a"))
	inventory.RegisterInventoryServer(s, inventory.NewStore(20))
	testsvc.Serve(t, s, "", inventory.Topic)

	client, err := runtime.Dial(broker, runtime.WithStreamWindow(8))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := calc.NewCalculatorClient(client, calc.Topic)
	for _, name := range []string{"a", "b"} { // each serves once it answers by name
		for {
			if _, err := c.ToServer(name).Add(ctx, 1, 1); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("server %s does not answer: %v", name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got, err := c.Add(ctx, 2, 3); err != nil || got != 5 {
		t.Fatalf("Add: %v %v", got, err)
	}
	if _, err := c.Div(ctx, 1, 0); !errors.Is(err, calc.ErrDivideByZero) {
		t.Fatalf("Div by zero: %v", err)
	}
	if err := c.Store(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Memory(ctx); err != nil {
		t.Fatal(err)
	}
	if replies, err := c.GatherMemory(ctx, 2); err != nil || len(replies) != 2 {
		t.Fatalf("GatherMemory: %v %v", replies, err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	inv := inventory.NewInventoryClient(client, inventory.Topic)
	if n, err := inv.Count(ctx, inventory.Filter{Shelf: "A"}); err != nil || n != 20 {
		t.Fatalf("Count: %v %v", n, err)
	}
	items := 0
	for _, err := range inv.List(ctx, inventory.Filter{Shelf: "B"}) {
		if err != nil {
			t.Fatal(err)
		}
		items++
	}
	if items != 20 {
		t.Fatalf("List: %d items", items)
	}
	for _, err := range inv.List(ctx, inventory.Filter{Shelf: "Z"}) {
		if !errors.Is(err, inventory.ErrNoShelf) {
			t.Fatalf("List of no shelf: %v", err)
		}
	}

	capture := filepath.Join(t.TempDir(), "capture.jsonl")
	if err := os.WriteFile(capture, records(), 0o666); err != nil {
		t.Fatal(err)
	}
	for doc, least := range map[string]int{
		"../../examples/calc/calc_amqprpc.asyncapi.json":           15, // 9 requests, 6 replies
		"../../examples/inventory/inventory_amqprpc.asyncapi.json": 11, // 3 requests, a reply, 20 items in 3 or more messages, 2 ends, 2 or more credits
	} {
		out, err := exec.Command("../../scripts/asyncapi.sh", "-messages", doc, capture).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", doc, err, out)
			continue
		}
		m := regexp.MustCompile(`(\d+) messages checked`).FindSubmatch(out)
		if m == nil {
			t.Errorf("%s: no count of messages checked:\n%s", doc, out)
			continue
		}
		if n, _ := strconv.Atoi(string(m[1])); n < least {
			t.Errorf("%s: fewer than %d messages checked:\n%s", doc, least, out)
		}
		t.Logf("%s", out)
	}
}

// captureFirehose consumes what RabbitMQ's firehose records of the vhost
// of broker (trace_on) until the test ends, and returns the function that
// gives what it recorded so far as JSON lines of {trace_key, exchange,
// routing_keys, properties, body}, once nothing came for a moment.
func captureFirehose(t *testing.T, broker string) func() []byte {
	conn, err := amqp.Dial(broker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, "publish.#", "amq.rabbitmq.trace", false, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []byte
	bad := 0 // records that would not encode
	last := time.Now()
	go func() {
		for d := range deliveries {
			props, _ := d.Headers["properties"].(amqp.Table)
			line, err := json.Marshal(map[string]any{
				"trace_key":    d.RoutingKey,
				"exchange":     d.Headers["exchange_name"],
				"routing_keys": d.Headers["routing_keys"],
				"properties":   props,
				"body":         string(d.Body),
			})
			mu.Lock()
			if err != nil {
				bad++
			}
			lines = append(append(lines, line...), '\n')
			last = time.Now()
			mu.Unlock()
		}
	}()
	return func() []byte {
		for {
			mu.Lock()
			quiet := time.Since(last) > 300*time.Millisecond
			out, failed := lines, bad
			mu.Unlock()
			if quiet {
				if failed > 0 {
					t.Errorf("%d firehose records would not encode as JSON", failed)
				}
				return out
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
