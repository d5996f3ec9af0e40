package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// serveCalc runs the calc example's servers a and b on topic until the
// test ends.
func serveCalc(t *testing.T, topic string) {
	for _, name := range []string{"a", "b"} {
		s := runtime.NewServer(brokerURL(), topic, runtime.WithServerName(name))
		calc.RegisterCalculatorServer(s, new(calc.Machine))
		served := make(chan error, 1)
		go func() { served <- s.Serve() }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Shutdown(ctx)
			<-served
		})
	}
	t.Cleanup(func() {
		if conn, err := amqp.Dial(brokerURL()); err == nil {
			ch, _ := conn.Channel()
			ch.QueueDelete(topic, false, false, false)
			ch.ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, topic), false, false)
			conn.Close()
		}
	})
	// Both serve once each answers by name.
	for _, name := range []string{"a", "b"} {
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if code, _, _ := amqprpc(t, "-server", name, "-timeout", "1s", "call", topic, "add", "v1=1", "v2=1"); code == 0 {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("server %s does not answer", name)
			}
		}
	}
}

// amqprpc runs the command with args and returns its exit status and
// what it printed.
func amqprpc(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"-url", brokerURL()}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCommands: every command against the calc example's servers.
func TestCommands(t *testing.T) {
	topic := fmt.Sprintf("cli.%d", time.Now().UnixNano())
	serveCalc(t, topic)
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string // each must be in what was printed
	}{
		{[]string{"call", topic, "add", "v1=2", "v2=3"}, 0, "5\n", ""},
		{[]string{"call", topic, "add", "-d", `{"v1": 40, "v2": 2}`}, 0, "42\n", ""},
		{[]string{"-v", "call", topic, "div", "a=7", "b=2"}, 0, "3\n", `> call exchange=amqprpc key=` + topic + ` {"args":{"a":7,"b":2},"method":"div"}` + "\n< {\"result\":3}"},
		{[]string{"call", topic, "div", "a=1", "b=0"}, 1, "", "amqprpc: error unknown: divide by zero"},
		{[]string{"call", topic, "add", "v1=two"}, 2, "", "v1=two: int wants an integer"},
		{[]string{"call", topic, "add", "v3=1"}, 2, "", `add has no parameter "v3"; it takes (v1 int, v2 int)`},
		{[]string{"call", topic, "mul"}, 1, "", `topic "` + topic + `" has no method "mul"`},
		{[]string{"list", topic}, 0, "a       Calculator  1.1      add clear div memory store", ""},
		{[]string{"describe", topic, "div"}, 0, "service Calculator 1.1 (server ", ""},
		{[]string{"describe", topic, "div"}, 0, ")\n  call div(a int, b int) int, since 1.1\n", ""},
		{[]string{"describe", topic}, 0, "  call memory() int, since 1.0, gather\n  cast store(v int), since 1.0", ""},
		{[]string{"-server", "b", "cast", topic, "store", "v=5"}, 0, "", ""},
		{[]string{"gather", topic, "memory", "-n", "2"}, 0, "b\t5\n", ""},
		{[]string{"fanout", topic, "clear"}, 0, "", ""},
		{[]string{"-server", "b", "call", topic, "memory"}, 0, "0\n", ""},
		{[]string{"call", "cli.nobody", "add"}, 1, "", "no server is bound to the topic"},
		{[]string{"frob", topic}, 2, "", `unknown command "frob"`},
	} {
		code, out, errOut := amqprpc(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("amqprpc %s: status %d, stdout %q, stderr %q; want %d, %q, %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
	}
}
