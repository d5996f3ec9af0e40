package main

import (
	"fmt"
	"io"
	"strings"
)

// The section "A plain client's reply path": what a client written
// without amqprpc, with amqp091-go alone as Spring AMQP, go-micro and the
// pika or kombu scripts of RabbitMQ's RPC tutorial are, gets from the
// default amqprpc server, depending on where it asks for its replies.
// Both clients are dialPlain's, publishing to the amqprpc exchange; the
// servers are serveAmqprpc's.

// replyPaths are the section's implementations, in the order of its table.
var replyPaths = []string{"plain-direct", "plain-queue"}

// runReplyPath measures the plain clients against amqprpc's server and
// writes the section.
func runReplyPath(cfg config, w io.Writer, md *strings.Builder, topic func(string) string, broker int) error {
	srv := make(map[string]*servers)
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	for _, impl := range replyPaths {
		s, err := startServers(impl, "default", topic("replypath-"+impl), 1, 0)
		if err != nil {
			return fmt.Errorf("start %s server: %w", impl, err)
		}
		srv[impl] = s
	}
	ms := []measurement{{"latency", 1, true}, {"tp1", 1, false}, {"tp8", 8, false}, {"tp64", 64, false}}
	if cfg.quick {
		ms = []measurement{{"latency", 1, true}, {"tp64", 64, false}}
	}
	res, err := series(cfg, w, ms, replyPaths, func(impl string, m measurement) (result, error) {
		return measure(impl, "default", srv[impl], m.inflight, cfg, m.latency, broker)
	})
	if err != nil {
		return err
	}
	writeReplyPath(md, res, ms)
	return nil
}

// column is a column of a section's table: the median of f over the
// results of measurement m, formatted by format.
type column struct {
	head   string
	m      string
	f      func(result) float64
	format func(float64) string
}

func writeReplyPath(md *strings.Builder, res results, ms []measurement) {
	fmt.Fprintf(md, "## A plain client's reply path\n\n"+
		"What a client written without amqprpc gets from the default amqprpc server (the generated Calculator's, default options): "+
		"a client with amqp091-go alone, as Spring AMQP, go-micro and the pika or kombu scripts of RabbitMQ's RPC tutorial are "+
		"(`dialPlain` in `bench/impls.go`, the baseline's client), publishing `{\"method\": \"add\", \"args\": {...}}` to the `amqprpc` exchange "+
		"with a correlation id and no `msg_id` or `batch_replies`, so that each reply comes alone.\n\n"+
		"- **plain-direct**: replies over direct reply-to (`reply_to: amq.rabbitmq.reply-to`), which the server publishes, once the broker took one to the client's node through a connection of the server's own for them, on the channel of the request's ack, as it publishes replies to a client's queue (docs/PROTOCOL.md, Replies).\n"+
		"- **plain-queue**: replies to a queue of the client's own (server-named, exclusive, auto-delete, consumed without acks), as amqprpc's client has them.\n\n")
	cols := []column{{"p50", "latency", p50, fmtMicros}, {"p99", "latency", p99, fmtMicros}}
	for _, m := range ms {
		if !m.latency {
			cols = append(cols, column{fmt.Sprintf("calls/s at %d", m.inflight), m.name, rate, fmtRate})
		}
	}
	const cpuAt = "tp64"
	cols = append(cols, column{"CPU/call client", cpuAt, clientCPU, fmtMicros}, column{"server", cpuAt, serverCPU, fmtMicros}, column{"broker", cpuAt, brokerCPU, fmtMicros})

	md.WriteString("| client |")
	for _, c := range cols {
		fmt.Fprintf(md, " %s |", c.head)
	}
	md.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
	for _, impl := range replyPaths {
		fmt.Fprintf(md, "| %s |", impl)
		for _, c := range cols {
			fmt.Fprintf(md, " %s |", c.format(res.med(impl, c.m, c.f)))
		}
		md.WriteString("\n")
	}
	md.WriteString("| plain-direct/plain-queue |")
	for _, c := range cols {
		fmt.Fprintf(md, " %.2f |", res.med("plain-direct", c.m, c.f)/res.med("plain-queue", c.m, c.f))
	}
	fmt.Fprintf(md, "\n\nCPU per call at 64 in flight. Target: plain-direct/plain-queue at least 0.8 in calls/s at 64 in flight (this run: %.2f).\n\n",
		res.med("plain-direct", "tp64", rate)/res.med("plain-queue", "tp64", rate))
}
