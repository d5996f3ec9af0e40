package inventory

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// The Store alone, without a broker: what List yields, and when it stops.
func TestStore(t *testing.T) {
	s := NewStore(100)
	ctx := context.Background()
	if n, err := s.Count(ctx, Filter{}); n != 400 || err != nil {
		t.Errorf("Count(every shelf) = %d, %v; want 400", n, err)
	}
	if n, err := s.Count(ctx, Filter{Shelf: "B", MinQty: 50}); n != 50 || err != nil {
		t.Errorf("Count(B, at least 50) = %d, %v; want 50", n, err)
	}
	if _, err := s.Count(ctx, Filter{Shelf: "Z"}); !errors.Is(err, ErrNoShelf) {
		t.Errorf("Count(Z) = %v; want ErrNoShelf", err)
	}

	var got []string
	for it, err := range s.List(ctx, Filter{Shelf: "C"}) {
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, it.SKU); len(got) == 3 {
			break // List must stop here: a second call of yield would panic
		}
	}
	if want := []string{"C-0001", "C-0002", "C-0003"}; !slices.Equal(got, want) {
		t.Errorf("the first items of C = %v; want %v", got, want)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, err := range s.List(cancelled, Filter{}) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("List after its context ended yielded %v; want context.Canceled", err)
		}
	}
}
