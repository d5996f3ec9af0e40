package runtime

import (
	"container/list"
	"sync"
	"time"
)

// cache is the one bounded memory of a server: of the requests it
// answered (WithDeduplication), of those in flight at lost connections
// (quarantine), of oslo.messaging's message ids, and of the nodes direct
// reply-to addresses name. It keeps at most size entries and, when weigh is
// set, at most maxWeight of their weight, forgetting the oldest first, and
// forgets an entry ttl after it was added, when ttl is set. It is safe for
// concurrent use.
type cache[K comparable, V any] struct {
	size      int
	ttl       time.Duration
	weigh     func(V) int
	maxWeight int

	mu      sync.Mutex
	entries map[K]*list.Element // of *cached[K, V]
	order   list.List           // oldest first
	weight  int
}

type cached[K comparable, V any] struct {
	key    K
	value  V
	added  time.Time
	weight int
}

func newCache[K comparable, V any](size int, ttl time.Duration) *cache[K, V] {
	return &cache[K, V]{size: size, ttl: ttl, entries: make(map[K]*list.Element)}
}

// weighed bounds the weight of the entries of c by maxWeight.
func (c *cache[K, V]) weighed(maxWeight int, weigh func(V) int) *cache[K, V] {
	c.maxWeight, c.weigh = maxWeight, weigh
	return c
}

// get returns the value of k, if c has it.
func (c *cache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.find(k)
	if e == nil {
		var none V
		return none, false
	}
	return e.value, true
}

// add adds k with v unless c has k, and returns the value c has then and
// whether it was added.
func (c *cache[K, V]) add(k K, v V) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.find(k); e != nil {
		return e.value, false
	}
	c.put(k, v)
	return v, true
}

// set sets the value of k to v, added anew when c does not have it, and
// weighs it again.
func (c *cache[K, V]) set(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.drop(el)
	}
	c.put(k, v)
}

// update sets the value of k to what f makes of the value c has (and
// whether it has one).
func (c *cache[K, V]) update(k K, f func(v V, ok bool) V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v V
	e := c.find(k)
	if e != nil {
		v = e.value
		c.drop(c.entries[k])
	}
	c.put(k, f(v, e != nil))
}

// remove forgets k.
func (c *cache[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.drop(el)
	}
}

// clear forgets every entry.
func (c *cache[K, V]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.order.Init()
	c.weight = 0
}

// len returns how many entries c keeps.
func (c *cache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// find returns the live entry of k, forgetting it if it expired; c.mu is
// held.
func (c *cache[K, V]) find(k K) *cached[K, V] {
	el, ok := c.entries[k]
	if !ok {
		return nil
	}
	e := el.Value.(*cached[K, V])
	if c.ttl > 0 && time.Since(e.added) > c.ttl {
		c.drop(el)
		return nil
	}
	return e
}

// put adds k, then forgets the oldest entries beyond the bounds; c.mu is
// held.
func (c *cache[K, V]) put(k K, v V) {
	e := &cached[K, V]{key: k, value: v, added: time.Now()}
	if c.weigh != nil {
		e.weight = c.weigh(v)
		c.weight += e.weight
	}
	c.entries[k] = c.order.PushBack(e)
	for len(c.entries) > c.size || (c.weigh != nil && c.weight > c.maxWeight && len(c.entries) > 1) {
		c.drop(c.order.Front())
	}
}

// drop forgets the entry of el; c.mu is held.
func (c *cache[K, V]) drop(el *list.Element) {
	e := c.order.Remove(el).(*cached[K, V])
	delete(c.entries, e.key)
	c.weight -= e.weight
}
