package runtime

import (
	"fmt"
	"maps"
	"net/url"

	amqp "github.com/rabbitmq/amqp091-go"
)

// replyToQueue is RabbitMQ's direct reply-to pseudo-queue: a client consumes
// it (no-ack) and names it in reply_to; replies come straight back on the
// channel that published the request, with no queue declared.
const replyToQueue = "amq.rabbitmq.reply-to"

// dial opens a connection to the broker at rawURL, named name in the
// broker's connection list.
func dial(rawURL string, cfg *config, name string) (*amqp.Connection, error) {
	acfg := cfg.amqpConfig
	acfg.Properties = maps.Clone(acfg.Properties)
	if acfg.Properties == nil {
		acfg.Properties = amqp.NewConnectionProperties()
	}
	if _, ok := acfg.Properties["connection_name"]; !ok {
		acfg.Properties.SetClientConnectionName(name)
	}
	conn, err := amqp.DialConfig(rawURL, acfg)
	if err != nil {
		return nil, fmt.Errorf("amqprpc: dial %s: %w", redact(rawURL), err)
	}
	return conn, nil
}

// redact returns rawURL with its password, if any, replaced by "xxxxx", so
// that it can be logged and put in errors.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable broker URL>"
	}
	return u.Redacted()
}

// declareExchange declares the durable topic exchange requests are
// published to.
func declareExchange(ch *amqp.Channel, name string) error {
	return declare(ch, name, amqp.ExchangeTopic, true)
}

// fanoutExchange is the name of the exchange that delivers to every server
// of topic.
func fanoutExchange(topic string) string { return topic + "_fanout" }

// declareFanout declares the fanout exchange of a topic. It is not
// auto-delete: it must not vanish between a client's declaration and its
// publication, which would close the channel.
func declareFanout(ch *amqp.Channel, topic string) error {
	return declare(ch, fanoutExchange(topic), amqp.ExchangeFanout, false)
}

func declare(ch *amqp.Channel, name, kind string, durable bool) error {
	err := ch.ExchangeDeclare(name, kind, durable,
		false, // autoDelete
		false, // internal
		false, // noWait
		nil)
	if err != nil {
		return fmt.Errorf("amqprpc: declare exchange %q: %w", name, err)
	}
	return nil
}
