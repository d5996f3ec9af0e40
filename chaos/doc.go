// Package chaos holds amqprpc's fault tests: a steady load of calls against
// a real broker while one fault at a time is injected, with what each
// fault cost printed and asserted. They change the broker for everyone
// (closing all connections, stopping it, raising an alarm), so they run
// against a node of their own that make chaos starts (scripts/cluster.sh,
// AMQPRPC_CLUSTER_DIR), behind the chaos build tag:
//
//	make chaos   # go test -tags chaos -count=1 -v ./chaos
package chaos
