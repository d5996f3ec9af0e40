package main

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// wireName returns the snake_case name under which a Go method or parameter
// name travels: Add -> add, instanceID -> instance_id, HTTPServer ->
// http_server, listAPIs -> list_apis.
func wireName(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) && i > 0 && startsWord(rs, i) && rs[i-1] != '_' {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// startsWord reports whether the upper-case rune rs[i] begins a new word:
// after a lower-case letter or a digit, or as the last capital of an
// acronym followed by a lower-case word ("HTTPServer"), except for the
// plural "s" of an acronym ("APIs").
func startsWord(rs []rune, i int) bool {
	prev := rs[i-1]
	if unicode.IsLower(prev) || unicode.IsDigit(prev) {
		return true
	}
	if !unicode.IsUpper(prev) || i+1 >= len(rs) || !unicode.IsLower(rs[i+1]) {
		return false
	}
	pluralS := rs[i+1] == 's' && (i+2 == len(rs) || !unicode.IsLower(rs[i+2]))
	return !pluralS
}

// exportedName returns an exported Go identifier for a parameter name, used
// as the field of the generated argument struct.
func exportedName(name string) string {
	r, size := utf8.DecodeRuneInString(name)
	if unicode.IsUpper(unicode.ToUpper(r)) && r != '_' {
		return string(unicode.ToUpper(r)) + name[size:]
	}
	return "X" + name
}

// freshName returns base, or base followed by underscores, whichever is
// first not in taken, and adds it to taken. Generated code uses it for its
// own local names so that they cannot shadow the user's parameter names.
func freshName(base string, taken map[string]bool) string {
	for taken[base] {
		base += "_"
	}
	taken[base] = true
	return base
}
