package runtime

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// throttleEvery is how often a log line of one kind, about one message,
// goes out while messages like it keep coming.
var throttleEvery = 10 * time.Second

// throttle keeps a flood of messages from becoming a flood of log lines:
// a line about one message (a malformed request, a reply that could not
// go out) goes out the first time, and then at most once every
// throttleEvery for each kind of line, saying how many like it were not
// logged since. The counts that matter are exact in Server.Stats; the log
// says that an incident began, and that it goes on. The zero value is
// ready to use.
type throttle struct {
	mu    sync.Mutex
	kinds map[string]*throttled // by kind: a message text of the runtime's, and a method's name
}

type throttled struct {
	next       time.Time // when a line may go out again
	suppressed int       // lines not logged since the last one
}

// log logs msg at level to l, unless a line of the same kind went out less
// than throttleEvery ago.
func (t *throttle) log(l *slog.Logger, level slog.Level, kind, msg string, args ...any) {
	if !l.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	t.mu.Lock()
	k := t.kinds[kind]
	if k == nil {
		if t.kinds == nil {
			t.kinds = make(map[string]*throttled)
		}
		k = new(throttled)
		t.kinds[kind] = k
	}
	if now.Before(k.next) {
		k.suppressed++
		t.mu.Unlock()
		return
	}
	suppressed := k.suppressed
	k.next, k.suppressed = now.Add(throttleEvery), 0
	t.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.Log(context.Background(), level, msg, args...)
}

// warn logs at slog.LevelWarn, throttled by msg.
func (t *throttle) warn(l *slog.Logger, msg string, args ...any) {
	t.log(l, slog.LevelWarn, msg, msg, args...)
}

// info logs at slog.LevelInfo, throttled by msg.
func (t *throttle) info(l *slog.Logger, msg string, args ...any) {
	t.log(l, slog.LevelInfo, msg, msg, args...)
}

// methodError logs at slog.LevelError, throttled by msg and method: one
// method's failures do not hide another's.
func (t *throttle) methodError(l *slog.Logger, method, msg string, args ...any) {
	t.log(l, slog.LevelError, msg+"\x00"+method, msg, args...)
}
