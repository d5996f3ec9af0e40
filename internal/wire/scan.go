package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// A reader of JSON for the messages on every request's path, as amqprpc's
// own peers write them: it takes an object's members and an array's
// elements as the bytes they are, and plain strings (ASCII, no escapes)
// as they are, where encoding/json's reflection would decode each into a
// value of its own, checking the bytes again at each level. It validates
// every byte it takes as encoding/json does. The values its callers keep
// as raw JSON (arguments, a request in a batch) it takes whatever they
// hold; the members it decodes it takes only as peers write them: a
// string with an escape or a byte beyond ASCII, a key that differs from a
// field's name only in case or has an escape, a field given twice, a null
// where a string or a bool goes, and its callers leave the whole message
// to encoding/json, which reads any JSON. Fuzz tests hold the two
// readings equal.

// maxScanDepth bounds the nesting the reader follows; deeper values are
// left to encoding/json.
const maxScanDepth = 64

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// onlySpace reports whether b[i:] is white space alone.
func onlySpace(b []byte, i int) bool { return skipSpace(b, i) == len(b) }

// skipValue returns the end of the JSON value that begins at b[i], nested
// depth deep, and whether it is one.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return stringEnd(b, i)
	case c == '{':
		if depth >= maxScanDepth {
			return i, false
		}
		return eachMember(b, i, func(_, v []byte) bool { return true }, depth+1)
	case c == '[':
		if depth >= maxScanDepth {
			return i, false
		}
		return eachElement(b, i, func([]byte) bool { return true }, depth+1)
	case c == 't':
		return literalEnd(b, i, "true")
	case c == 'f':
		return literalEnd(b, i, "false")
	case c == 'n':
		return literalEnd(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return numberEnd(b, i)
	}
	return i, false
}

func literalEnd(b []byte, i int, lit string) (int, bool) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return i, false
	}
	return i + len(lit), true
}

// numberEnd returns the end of the number that begins at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(b []byte, i int) (int, bool) {
	digits := func(i int) (int, bool) {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j, j > i
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i, _ = digits(i)
	default:
		return i, false
	}
	var ok bool
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return i, false
		}
	}
	return i, true
}

// stringEnd returns the end of the string that begins at b[i], after its
// closing quote. Like encoding/json, it takes any byte but a control
// character in a string, and the escapes JSON has.
func stringEnd(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return i, false
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

// plainString returns the string that the JSON value v is, when v is a
// string of printable ASCII without escapes, which it is as it is.
func plainString(v []byte) (string, bool) {
	s, ok := plainBytes(v)
	return string(s), ok
}

// plainBytes is plainString without making a string.
func plainBytes(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	s := v[1 : len(v)-1]
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return nil, false
		}
	}
	return s, true
}

// plainBool returns the bool that the JSON value v is, when it is one.
func plainBool(v []byte) (bool, bool) {
	switch string(v) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// plainInt returns the int64 that the JSON value v is, when it is an
// integer written as one, as encoding/json decodes it into an int64.
func plainInt(v []byte) (int64, bool) {
	if end, ok := numberEnd(v, 0); !ok || end != len(v) || bytes.ContainsAny(v, ".eE") {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// eachMember calls f with the key (as JSON, quoted) and the value of each
// member of the object that begins at b[i], and returns the end of the
// object and whether it is one and f took every member.
func eachMember(b []byte, i int, f func(key, value []byte) bool, depth int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		end, ok := stringEnd(b, i)
		if !ok {
			return end, false
		}
		key := b[i:end]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		i = skipSpace(b, i+1)
		vend, ok := skipValue(b, i, depth)
		if !ok || !f(key, b[i:vend]) {
			return vend, false
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// eachElement calls f with each element of the array that begins at b[i],
// and returns the end of the array and whether it is one and f took every
// element.
func eachElement(b []byte, i int, f func(value []byte) bool, depth int) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		end, ok := skipValue(b, i, depth)
		if !ok || !f(b[i:end]) {
			return end, false
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// fields tells the members of an object that a decoder takes apart: a
// key that differs from one of names only in case is one that
// encoding/json would take as that name, and a name given twice one that
// it would take the last of; the reader leaves both to it.
type fields struct {
	names []string
	seen  uint32
}

// take reports which of the names the key quoted is (-1 for none) and
// whether the reader may go on: false for a key that is not plain, one
// encoding/json would match otherwise, or a name seen before.
func (fs *fields) take(quoted []byte) (int, bool) {
	key, ok := plainBytes(quoted)
	if !ok { // an escape could spell a name
		return -1, false
	}
	for n, name := range fs.names {
		if string(key) == name {
			if fs.seen&(1<<n) != 0 {
				return n, false
			}
			fs.seen |= 1 << n
			return n, true
		}
		if bytes.EqualFold(key, []byte(name)) {
			return n, false
		}
	}
	return -1, true
}

// scanObject reads the object that begins at b[i], nested depth deep,
// handing set the value of each member named in names, by its index;
// other members it skips. It returns the object's end, and whether it was
// one that fields let the reader take and set took every value of.
func scanObject(b []byte, i int, names []string, set func(n int, v []byte) bool, depth int) (int, bool) {
	fs := fields{names: names}
	return eachMember(b, i, func(key, v []byte) bool {
		n, ok := fs.take(key)
		return ok && (n < 0 || set(n, v))
	}, depth)
}

// scanWhole is scanObject of all of body, white space around it allowed.
func scanWhole(body []byte, names []string, set func(n int, v []byte) bool) bool {
	end, ok := scanObject(body, skipSpace(body, 0), names, set, 1)
	return ok && onlySpace(body, end)
}

// scanArray reads body, an array of objects, into entries of type T, each
// member named in names set by set; it reports whether it took it all.
func scanArray[T any](body []byte, names []string, set func(e *T, n int, v []byte) bool) ([]T, bool) {
	entries := make([]T, 0, 16)
	end, ok := eachElement(body, skipSpace(body, 0), func(v []byte) bool {
		var zero T
		entries = append(entries, zero)
		e := &entries[len(entries)-1] // filled in place: nothing appends while it is
		_, ok := scanObject(v, 0, names, func(n int, v []byte) bool { return set(e, n, v) }, 2)
		return ok
	}, 1)
	return entries, ok && onlySpace(body, end)
}

// member is a member of a JSON object: its key, unquoted, and its value
// as it is.
type member struct {
	key, value []byte
}

// members are the members of an object, in order.
type members []member

// get returns the value of key, the last given; nil if none.
func (ms members) get(key string) []byte {
	for i := len(ms) - 1; i >= 0; i-- {
		if string(ms[i].key) == key {
			return ms[i].value
		}
	}
	return nil
}

// membersOf returns the members of the JSON object b, or ErrNotJSON.
// Read by encoding/json when a key is not plain, they are what a
// map[string]json.RawMessage would hold.
func membersOf(b []byte) (members, error) {
	ms := make(members, 0, 12)
	end, ok := eachMember(b, skipSpace(b, 0), func(key, v []byte) bool {
		k, ok := plainBytes(key)
		ms = append(ms, member{k, v})
		return ok
	}, 1)
	if ok && onlySpace(b, end) {
		return ms, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	ms = ms[:0]
	for k, v := range fields {
		ms = append(ms, member{[]byte(k), v})
	}
	return ms, nil
}
