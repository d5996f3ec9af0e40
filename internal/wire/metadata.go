package wire

import (
	"slices"
	"strings"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Metadata travels as AMQP headers of a request alone, and as the
// "headers" object of a batch entry: keys and string values. Keys
// beginning with "amqprpc-" or "x-" are the runtime's and the broker's,
// not metadata (Reserved), and a key must fit an AMQP short string.

// Reserved reports whether a header is the runtime's or the broker's
// rather than metadata.
func Reserved(key string) bool {
	return strings.HasPrefix(key, "amqprpc-") || strings.HasPrefix(key, "x-")
}

// metadataKey reports whether key may be a key of metadata that comes in:
// neither reserved nor longer than a header name may be.
func metadataKey(key string) bool { return !Reserved(key) && len(key) <= MaxShortString }

// PutMetadata adds md to headers, which it makes if nil, and returns them.
func PutMetadata(headers amqp.Table, md map[string]string) amqp.Table {
	for k, v := range md {
		if Reserved(k) {
			continue
		}
		if headers == nil {
			headers = make(amqp.Table, len(md)+1)
		}
		headers[k] = v
	}
	return headers
}

// MetadataOf returns the metadata of headers: those that are strings and
// metadata keys; nil if none.
func MetadataOf(headers amqp.Table) map[string]string {
	var md map[string]string
	for k, v := range headers {
		s, ok := v.(string)
		if !ok || !metadataKey(k) {
			continue
		}
		if md == nil {
			md = make(map[string]string)
		}
		md[k] = s
	}
	return md
}

// appendMetadata appends md to b as a batch entry's "headers" member,
// without the reserved keys, in key order; nothing if none is left.
func appendMetadata(b []byte, md map[string]string) []byte {
	var some [4]string // the metadata of most requests, without allocating
	keys := some[:0]
	for k := range md {
		if !Reserved(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return b
	}
	slices.Sort(keys)
	b = append(b, `,"headers":{`...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		b = AppendJSONString(b, md[k])
	}
	return append(b, '}')
}

// AppendJSONString appends s to b as a JSON string (appendQuoted), without
// a copy when nothing in it is escaped.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return appendQuoted(b, []byte(s))
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendQuoted appends text to b as a JSON string: quotes, backslashes
// and control characters escaped, each byte that is not UTF-8 replaced by
// U+FFFD, as encoding/json writes a string (a result's json.RawMessage or
// MarshalJSON may hold such bytes; oslo.messaging's peers decode every
// message as UTF-8), the rest as it is.
func appendQuoted(b, text []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(text); {
		c := text[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRune(text[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(append(b, text[start:i]...), `\ufffd`...)
		} else if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		} else {
			b = append(b, text[start:i]...)
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
		}
		i++
		start = i
	}
	b = append(b, text[start:]...)
	return append(b, '"')
}
