package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// ErrServerNameTaken is returned by Serve when another server of the same
// name (WithServerName) serves the topic already: both would receive the
// requests sent to that name, and run each twice.
var ErrServerNameTaken = errors.New("amqprpc: a server of this name serves the topic already")

// nameProbe bounds the wait for a server of the same name to answer.
const nameProbe = 2 * time.Second

// nameTaken reports whether a server named as s answers on its topic: it
// sends a description request to that name, with the mandatory flag, and
// takes the broker's return for no, an answer for yes (but a description
// of a server of another topic or name: <topic>.<name> is also the key of
// a topic named so), and silence (a queue whose server is gone, and the
// broker not yet aware) for no; a failure for an answer (a server whose
// interceptor refuses descriptions) is a yes. Only amqprpc's protocol is asked;
// oslo.messaging's servers are not. Two servers of one name that start
// together may both find it free.
func (s *Server) nameTaken(conn amqpio.Conn) (bool, error) {
	if s.cfg.oslo != nil { // oslo.messaging's servers answer no description
		return false, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, err
	}
	defer ch.Close()
	if err := declareShared(conn, s.proto.RequestExchange()); err != nil { // on a new broker, the first server's
		return false, err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	replies, err := ch.Consume(wire.DirectReplyTo, "", true, false, false, false, nil) // autoAck, as direct reply-to wants
	if err != nil {
		return false, fmt.Errorf("amqprpc: consume direct replies: %w", err)
	}
	id := uuid.NewString()
	var pub amqp.Publishing // anonymous: a login the broker names otherwise would be refused; a refusal (unauthenticated) is an answer
	if err := s.proto.EncodeRequest(&pub, &wire.Out{MsgID: id, Method: describe.Request, ReplyTo: wire.DirectReplyTo, Deadline: time.Now().Add(nameProbe)}); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), nameProbe)
	defer cancel()
	if _, err := ch.Publish(ctx, s.proto.RequestExchange().Name, s.topic+"."+s.server, true, false, pub); err != nil { // mandatory
		return false, err
	}
	// closedUnder says why the channel closed under the question.
	closedUnder := func() error {
		select {
		case e := <-closed:
			if r := refusalOf(e); r != nil { // the server's user may not publish to its own name
				return fmt.Errorf("amqprpc: asking for a server of the same name: %w", r)
			}
		default:
		}
		return errors.New("amqprpc: the channel closed while asking for a server of the same name")
	}
	for {
		select {
		case _, ok := <-returns:
			if !ok { // closed with the channel, not a return
				return false, closedUnder()
			}
			return false, nil
		case d, ok := <-replies:
			if !ok {
				return false, closedUnder()
			}
			taken := false
			s.proto.SplitReplies(&d, func(r *wire.Reply) {
				if r.ID != id {
					return
				}
				// The key <topic>.<name> also routes to the queue of a
				// topic named so: the description says whose it is.
				var desc describe.Server
				if f, err := s.proto.DecodeReply(r, &desc); f != nil || err != nil || desc.Topic == s.topic && desc.Name == s.server {
					taken = true
				}
			})
			if taken {
				return true, nil
			}
		case <-ctx.Done():
			return false, nil
		}
	}
}

// checkName stops a server from serving under a name that another server
// of its topic answers to: with ErrServerNameTaken when the name was
// given (WithServerName); the default name, the host's, is shared by the
// processes of one host, which the log line says.
func (s *Server) checkName(conn amqpio.Conn) error {
	taken, err := s.nameTaken(conn)
	switch {
	case err != nil:
		return err
	case !taken:
		return nil
	case s.cfg.serverName == "":
		s.log.Error("amqprpc: another server of this name, the host's, serves the topic: both receive the requests sent to the name, and run them; give each its own name (WithServerName)")
		return nil
	}
	return fmt.Errorf("%w: %q on topic %q; give each server its own name (WithServerName)", ErrServerNameTaken, s.server, s.topic)
}
