package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// TestOsloExceptions: Go errors become the Python exceptions that the
// OsloExceptions name, and those exceptions become the errors and codes
// they map to; others go by their code.
func TestOsloExceptions(t *testing.T) {
	errQuota := errors.New("quota")
	oslo := &OsloConfig{Exceptions: []OsloException{
		{Module: "nova.exception", Class: "QuotaError", Err: errQuota, Code: CodeResourceExhausted},
		{Module: "nova.exception", Class: "Conflict", Code: CodeAborted},
	}}
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{toError(fmt.Errorf("wrapped: %w", errQuota), &ServiceDesc{}), "nova.exception.QuotaError"},
		{&Error{Code: CodeAborted}, "nova.exception.Conflict"},
		{&Error{Code: CodeInvalidArgument}, "."},
		{&Error{Code: CodeUnimplemented, Module: "oslo_messaging.rpc.dispatcher", Class: "NoSuchMethod"}, "oslo_messaging.rpc.dispatcher.NoSuchMethod"},
	} {
		f := tc.err.failure(oslo)
		if got := f.Module + "." + f.Class; got != tc.want {
			t.Errorf("%v: sent as %s, want %s", tc.err, got, tc.want)
		}
	}
	for _, tc := range []struct {
		module, class string
		code          Code
	}{
		{"nova.exception", "QuotaError", CodeResourceExhausted},
		{"nova.exception", "InstanceNotFound", CodeUnknown},
		{"builtins", "KeyError", CodeNotFound},
	} {
		f := &wire.Failure{Code: "unknown", Module: tc.module, Class: tc.class, Message: "m"}
		if tc.module == "builtins" {
			f.Code = "not_found" // as the wire reads it
		}
		if e := remoteError(f, nil, oslo); e.Code != tc.code || e.Module != tc.module || e.Class != tc.class {
			t.Errorf("%s.%s: %+v, want code %s", tc.module, tc.class, e, tc.code)
		}
	}
	if e := remoteError(&wire.Failure{Code: "unknown", Module: "nova.exception", Class: "QuotaError"}, nil, oslo); !errors.Is(e, errQuota) {
		t.Errorf("%v is not the error OsloException maps it to", e)
	}
}

// TestOsloOptionsInAnyOrder: the options that decide what WithOslo
// changes decide it whatever their order: WithExchange over the control
// exchange, a profile or WithAckAfterReply over WithOslo's default of
// acknowledging requests when they are taken.
func TestOsloOptionsInAnyOrder(t *testing.T) {
	oslo := WithOslo(OsloConfig{ControlExchange: "nova"})
	for _, tc := range []struct {
		name          string
		opts          []ServerOption
		exchange      string
		ackAfterReply bool
	}{
		{"WithOslo alone", []ServerOption{oslo}, "nova", false},
		{"WithExchange", []ServerOption{oslo, WithExchange("neutron")}, "neutron", false},
		{"WithProfile(Fast)", []ServerOption{oslo, WithProfile(Fast)}, "nova", true},
		{"WithProfile(Safe)", []ServerOption{oslo, WithProfile(Safe)}, "nova", true},
		{"WithAckAfterReply(true)", []ServerOption{oslo, WithAckAfterReply(true)}, "nova", true},
		{"WithProfile(Safe), WithAckAfterReply(false)", []ServerOption{oslo, WithProfile(Safe), WithAckAfterReply(false)}, "nova", false},
	} {
		forward, backward := serverConfig(tc.opts), serverConfig(reversed(tc.opts))
		for _, cfg := range []config{forward, backward} {
			if cfg.exchange != tc.exchange || cfg.ackAfterReply != tc.ackAfterReply {
				t.Errorf("%s: exchange %q, ack after reply %v; want %q, %v", tc.name, cfg.exchange, cfg.ackAfterReply, tc.exchange, tc.ackAfterReply)
			}
		}
		if forward.requestConfirms != backward.requestConfirms || forward.replyConfirms != backward.replyConfirms {
			t.Errorf("%s: the confirms depend on the order of the options", tc.name)
		}
	}
}

func reversed[T any](s []T) []T {
	r := make([]T, len(s))
	for i, v := range s {
		r[len(s)-1-i] = v
	}
	return r
}

// TestOsloContextHidesTheToken: a request context logs without its
// auth_token, which travels in clear.
func TestOsloContextHidesTheToken(t *testing.T) {
	ctx := WithOsloContext(context.Background(), map[string]any{"user_id": "u1", "auth_token": "secret-token"})
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("request", "context", OsloContext(ctx))
	if strings.Contains(buf.String(), "secret-token") || !strings.Contains(buf.String(), `"user_id":"u1"`) {
		t.Errorf("logged %s", buf.String())
	}
	if OsloContext(ctx)["auth_token"] != "secret-token" {
		t.Errorf("the method does not see the token")
	}
	if OsloContext(context.Background()) != nil {
		t.Errorf("a context without one has one")
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{0: 0, time.Second: 0, 2 * time.Second: time.Second, 5 * time.Second: 2 * time.Second, 60 * time.Second: 30 * time.Second} {
		if got := heartbeatInterval(timeout); got != want {
			t.Errorf("heartbeatInterval(%v) = %v, want %v", timeout, got, want)
		}
	}
}
