package amqpio

import "testing"

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:secret@host:5672/vh": "amqp://guest:xxxxx@host:5672/vh",
		"amqps://host/":                    "amqps://host/",
		"amqp://user@host/":                "amqp://user@host/",
		"::not a url":                      "<unparsable broker URL>",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q; want %q", in, got, want)
		}
	}
}
