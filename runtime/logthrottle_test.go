package runtime

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestThrottle: the first line of a kind goes out, the next ones within
// throttleEvery do not, and the first after it says how many did not;
// kinds, and one method's errors and another's, are throttled apart.
func TestThrottle(t *testing.T) {
	defer func(d time.Duration) { throttleEvery = d }(throttleEvery)
	throttleEvery = 100 * time.Millisecond
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var th throttle
	for range 5 {
		th.warn(l, "a")
		th.warn(l, "b")
		th.methodError(l, "m1", "panic")
		th.methodError(l, "m2", "panic")
	}
	time.Sleep(150 * time.Millisecond)
	th.warn(l, "a")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines; want a, b, panic twice and a again:\n%s", len(lines), buf.String())
	}
	if last := lines[4]; !strings.Contains(last, "msg=a") || !strings.Contains(last, "suppressed=4") {
		t.Fatalf("last line %q; want a with suppressed=4", last)
	}
	if strings.Contains(strings.Join(lines[:4], "\n"), "suppressed") {
		t.Fatalf("a first line says suppressed:\n%s", buf.String())
	}
	th.info(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), "quiet")
	if strings.Contains(buf.String(), "quiet") {
		t.Fatal("a line below the logger's level went out")
	}
}
