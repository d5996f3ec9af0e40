package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Interface versions are "major.minor", as in OpenStack: a server of
// version have can serve a request that needs version need when the majors
// are equal and have's minor is at least need's. "" stands for "1.0".

// Compatible reports whether have can serve need. Unparsable versions are
// never compatible. A version may have a third part, a revision, as
// oslo.messaging's do: with equal minors, have's must be at least need's.
func Compatible(have, need string) bool {
	hMaj, hMin, hRev, err1 := parseRevision(have)
	nMaj, nMin, nRev, err2 := parseRevision(need)
	return err1 == nil && err2 == nil && hMaj == nMaj && (hMin > nMin || hMin == nMin && hRev >= nRev)
}

// parseRevision parses "major.minor" or "major.minor.revision".
func parseRevision(v string) (major, minor, rev int, err error) {
	if mm, r, ok := strings.Cut(v, "."); ok {
		if m, rs, ok := strings.Cut(r, "."); ok {
			rev, err = strconv.Atoi(rs)
			if err != nil || rev < 0 {
				return 0, 0, 0, fmt.Errorf("amqprpc: version %q is not major.minor.revision", v)
			}
			v = mm + "." + m
		}
	}
	major, minor, err = ParseVersion(v)
	return major, minor, rev, err
}

// ParseVersion parses "major.minor"; "" is 1.0.
func ParseVersion(v string) (major, minor int, err error) {
	if v == "" {
		return 1, 0, nil
	}
	a, b, ok := strings.Cut(v, ".")
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return 0, 0, fmt.Errorf("amqprpc: version %q is not major.minor", v)
	}
	return major, minor, nil
}

// VersionOr1 returns v, or "1.0" for "".
func VersionOr1(v string) string {
	if v == "" {
		return "1.0"
	}
	return v
}
