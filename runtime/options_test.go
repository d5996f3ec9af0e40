package runtime_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/runtime"
)

// TestOptionSides: each option configures the side it says, and only that
// one: Dial refuses a server's option, and NewServer a client's, at
// compile time. Every option is a LocalOption.
func TestOptionSides(t *testing.T) {
	noopClient := func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
		return next(ctx, req, reply)
	}
	noopServer := func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
		return next(ctx)
	}
	for _, tc := range []struct {
		name           string
		opt            runtime.LocalOption
		client, server bool
	}{
		{"WithExchange", runtime.WithExchange("x"), true, true},
		{"WithLogger", runtime.WithLogger(slog.Default()), true, true},
		{"WithTLS", runtime.WithTLS(nil), true, true},
		{"WithHeartbeat", runtime.WithHeartbeat(time.Second), true, true},
		{"WithMaxRequestBytes", runtime.WithMaxRequestBytes(1), false, true},
		{"WithURLs", runtime.WithURLs("amqp://h/"), true, true},
		{"WithReconnectBackoff", runtime.WithReconnectBackoff(time.Second, time.Minute), true, true},
		{"WithMaxBodySize", runtime.WithMaxBodySize(1), true, true},
		{"WithProfile", runtime.WithProfile(runtime.Safe), true, true},
		{"WithOslo", runtime.WithOslo(runtime.OsloConfig{}), true, true},
		{"WithTimeout", runtime.WithTimeout(time.Second), true, false},
		{"WithBatching", runtime.WithBatching(false), true, false},
		{"WithMaxInFlight", runtime.WithMaxInFlight(1), true, false},
		{"WithRequestConfirms", runtime.WithRequestConfirms(true), true, false},
		{"WithClientInterceptors", runtime.WithClientInterceptors(noopClient), true, false},
		{"WithPrefetch", runtime.WithPrefetch(1), false, true},
		{"WithServerName", runtime.WithServerName("s"), false, true},
		{"WithDeduplication", runtime.WithDeduplication(1), false, true},
		{"WithQueueType", runtime.WithQueueType(runtime.QueueQuorum), false, true},
		{"WithQueueExpiry", runtime.WithQueueExpiry(time.Minute), false, true},
		{"WithDeliveryLimit", runtime.WithDeliveryLimit(1), false, true},
		{"WithDeadLetterExchange", runtime.WithDeadLetterExchange("d"), false, true},
		{"WithReplyConfirms", runtime.WithReplyConfirms(true), false, true},
		{"WithAckAfterReply", runtime.WithAckAfterReply(true), false, true},
		{"WithServerInterceptors", runtime.WithServerInterceptors(noopServer), false, true},
	} {
		_, client := tc.opt.(runtime.ClientOption)
		_, server := tc.opt.(runtime.ServerOption)
		if client != tc.client || server != tc.server {
			t.Errorf("%s: client %v, server %v; want %v, %v", tc.name, client, server, tc.client, tc.server)
		}
	}
}
