package runtime_test

import (
	"context"
	"maps"
	"testing"

	"github.com/amqprpc/amqprpc/runtime"
)

// TestAppendMetadata: pairs add to the metadata already in the context, a
// key already there takes the pair's value, and the parent context's
// metadata is left as it was; an odd number of strings panics.
func TestAppendMetadata(t *testing.T) {
	parent := runtime.WithMetadata(context.Background(), runtime.Metadata{"tenant": "t1", "n": "1"})
	ctx := runtime.AppendMetadata(parent, "traceparent", "00-abc", "n", "2")
	if got, want := runtime.OutgoingMetadata(ctx), (runtime.Metadata{"tenant": "t1", "n": "2", "traceparent": "00-abc"}); !maps.Equal(got, want) {
		t.Errorf("metadata %v, want %v", got, want)
	}
	if got, want := runtime.OutgoingMetadata(parent), (runtime.Metadata{"tenant": "t1", "n": "1"}); !maps.Equal(got, want) {
		t.Errorf("the parent's metadata became %v, want %v", got, want)
	}
	if got := runtime.OutgoingMetadata(runtime.AppendMetadata(context.Background())); len(got) != 0 {
		t.Errorf("no pairs gave metadata %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("an odd number of strings did not panic")
		}
	}()
	runtime.AppendMetadata(parent, "k", "v", "odd")
}
