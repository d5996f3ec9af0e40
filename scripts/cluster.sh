#!/usr/bin/env bash
# RabbitMQ nodes of the project's own, for tests that break brokers or need
# a cluster, apart from any broker the machine runs:
#
#   scripts/cluster.sh start [N]     start N nodes (3) and join them into a cluster
#   scripts/cluster.sh stop          stop every node and remove all they left
#   scripts/cluster.sh status        the cluster's status, as node 1 sees it
#   scripts/cluster.sh urls          the nodes' AMQP URLs, one a line
#   scripts/cluster.sh start-node I  start node I (1-based) again, and wait for it
#   scripts/cluster.sh stop-node I   stop node I gracefully
#   scripts/cluster.sh pid I         the operating system pid of node I
#   scripts/cluster.sh ctl I ARGS    rabbitmqctl ARGS on node I
#   scripts/cluster.sh queues I ARGS rabbitmq-queues ARGS on node I
#
# Node I is amqprpc-I@localhost, with AMQP on 127.0.0.1:$((PORT+I-1)) and
# Erlang distribution on $((PORT+20000+I-1)), PORT being AMQPRPC_CLUSTER_PORT
# (5701). Its data, logs and configuration live under AMQPRPC_CLUSTER_DIR
# (/tmp/amqprpc-cluster); the nodes share one Erlang cookie there. With
# AMQPRPC_CLUSTER_TLS, each node also listens for AMQP over TLS on
# $((PORT+100+I-1)), requiring a client certificate, with a test CA made there
# (internal/tlsgen), and a client may log in with its certificate (EXTERNAL)
# as the user its common name names. Nothing of /etc/rabbitmq or /var/lib/rabbitmq is read
# or written: several clusters of different directories and ports run side
# by side, and beside the machine's own broker.
set -euo pipefail

dir=${AMQPRPC_CLUSTER_DIR:-/tmp/amqprpc-cluster}
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
port=${AMQPRPC_CLUSTER_PORT:-5701}
bin=/usr/lib/rabbitmq/bin
[ -x "$bin/rabbitmq-server" ] || bin=$(dirname "$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)")

node() { echo "amqprpc-$1@localhost"; }

# env runs a command with the environment of node $1.
env_of() {
	local i=$1
	shift
	env HOME="$dir" \
		RABBITMQ_NODENAME="$(node "$i")" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT=$((port + i - 1)) \
		RABBITMQ_DIST_PORT=$((port + 20000 + i - 1)) \
		RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
		RABBITMQ_CONFIG_FILE="$dir/node$i/rabbitmq.conf" \
		RABBITMQ_CONFIG_FILES="$dir/node$i/conf.d" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$dir/node$i/advanced.config" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
		RABBITMQ_MNESIA_BASE="$dir/node$i/mnesia" \
		RABBITMQ_LOG_BASE="$dir/node$i/log" \
		RABBITMQ_PID_FILE="$dir/node$i/pid" \
		ERL_EPMD_ADDRESS=127.0.0.1 \
		"$@"
}

ctl() {
	local i=$1
	shift
	env_of "$i" "$bin/rabbitmqctl" -n "$(node "$i")" "$@"
}

prepare() {
	if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x "$bin/rabbitmq-server" ]; then
		scripts_dir=$(dirname "$0")
		"$scripts_dir/broker.sh" >/dev/null # installs RabbitMQ where it can
	fi
	mkdir -p "$dir"
	[ -f "$dir/.erlang.cookie" ] || { head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/.erlang.cookie"; chmod 400 "$dir/.erlang.cookie"; }
	# with TLS, a client may log in with its certificate (EXTERNAL), as
	# the user its common name names
	if [ -n "${AMQPRPC_CLUSTER_TLS:-}" ]; then
		echo '[rabbitmq_auth_mechanism_ssl].' >"$dir/enabled_plugins"
	else
		echo '[].' >"$dir/enabled_plugins"
	fi
	if [ -n "${AMQPRPC_CLUSTER_TLS:-}" ] && [ ! -f "$dir/tls/ca.pem" ]; then
		(cd "$(dirname "$0")/.." && go run ./internal/tlsgen -dir "$dir/tls")
	fi
	echo 'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$dir/rabbitmq-env.conf"
}

start_node() {
	local i=$1
	mkdir -p "$dir/node$i/conf.d" "$dir/node$i/log"
	if [ ! -f "$dir/node$i/rabbitmq.conf" ]; then
		cat >"$dir/node$i/rabbitmq.conf" <<-EOF
			listeners.tcp.default = 127.0.0.1:$((port + i - 1))
			loopback_users = none
			cluster_partition_handling = autoheal
			net_ticktime = 10
		EOF
		if [ -n "${AMQPRPC_CLUSTER_TLS:-}" ]; then
			cat >>"$dir/node$i/rabbitmq.conf" <<-EOF
				listeners.ssl.default = 127.0.0.1:$((port + 100 + i - 1))
				ssl_options.cacertfile = $dir/tls/ca.pem
				ssl_options.certfile = $dir/tls/server.pem
				ssl_options.keyfile = $dir/tls/server-key.pem
				ssl_options.verify = verify_peer
				ssl_options.fail_if_no_peer_cert = true
				auth_mechanisms.1 = PLAIN
				auth_mechanisms.2 = AMQPLAIN
				auth_mechanisms.3 = EXTERNAL
				ssl_cert_login_from = common_name
			EOF
		fi
		echo '[].' >"$dir/node$i/advanced.config"
	fi
	# from the node's own directory: a node that crashes writes its
	# erl_crash.dump and MnesiaCore files where it was started
	(cd "$dir/node$i" && env_of "$i" "$bin/rabbitmq-server" -detached)
	# await_startup fails at once until the node has registered with epmd
	for _ in $(seq 120); do
		ctl "$i" -q -t 5 ping >/dev/null 2>&1 && break
		sleep 0.5
	done
	if ! ctl "$i" -q -t 120 await_startup >/dev/null 2>&1; then
		echo "cluster: node $(node "$i") did not start; see $dir/node$i/log" >&2
		tail -n 20 "$dir/node$i/log/"*.log >&2 2>/dev/null || true
		return 1
	fi
}

case ${1:-} in
start)
	n=${2:-3}
	prepare
	for i in $(seq "$n"); do start_node "$i" & done
	wait
	for i in $(seq 2 "$n"); do
		ctl "$i" -q stop_app
		ctl "$i" -q join_cluster "$(node 1)"
		ctl "$i" -q start_app
	done
	echo "$n" >"$dir/nodes"
	echo "cluster: $n nodes running: $(seq -s ' ' "$port" $((port + n - 1)) | sed 's/[0-9]*/127.0.0.1:&/g')" >&2
	;;
stop)
	if [ -f "$dir/nodes" ]; then
		for i in $(seq "$(cat "$dir/nodes")"); do
			pid=$(cat "$dir/node$i/pid" 2>/dev/null || true)
			ctl "$i" -q -t 30 stop >/dev/null 2>&1 || true
			if [ -n "$pid" ]; then
				kill -CONT "$pid" 2>/dev/null || true
				kill -9 "$pid" 2>/dev/null || true
			fi
		done
	fi
	# whatever a failed start left: every process whose command line names our directory
	pkill -CONT -f -- "-home $dir( |$)" 2>/dev/null || true
	pkill -9 -f -- "-home $dir( |$)" 2>/dev/null || true
	rm -rf "$dir"
	;;
status)
	ctl 1 cluster_status
	;;
urls)
	for i in $(seq "$(cat "$dir/nodes")"); do echo "amqp://guest:guest@127.0.0.1:$((port + i - 1))/"; done
	;;
start-node)
	start_node "$2"
	;;
stop-node)
	ctl "$2" -q stop_app
	ctl "$2" -q stop
	;;
pid)
	cat "$dir/node$2/pid"
	;;
ctl)
	shift
	ctl "$@"
	;;
queues)
	i=$2
	shift 2
	env_of "$i" "$bin/rabbitmq-queues" -n "$(node "$i")" "$@"
	;;
*)
	echo "usage: $0 start [N] | stop | status | urls | start-node I | stop-node I | pid I | ctl I ARGS | queues I ARGS" >&2
	exit 2
	;;
esac
