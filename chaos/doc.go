// Package chaos holds amqprpc's fault tests: a steady load of calls against
// the real broker while one fault at a time is injected, with what each
// fault cost printed and asserted. They change the broker for everyone
// (closing all connections, stopping it, raising an alarm), so they run on
// their own, behind the chaos build tag:
//
//	make chaos   # go test -tags chaos -count=1 -v ./chaos
package chaos
