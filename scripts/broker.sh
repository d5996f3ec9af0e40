#!/usr/bin/env bash
# Makes sure a RabbitMQ answers at $AMQP_URL (default: the local one).
# A local broker that is stopped is started; one that is missing is installed
# from Debian's packages when running as root. Anything else is explained.
set -euo pipefail

url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
hostport=${url#*://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
host=${hostport%:*}
port=${hostport##*:}
if [ "$host" = "$hostport" ]; then
	case $url in amqps://*) port=5671 ;; *) port=5672 ;; esac
fi
redacted=$(printf '%s' "$url" | sed -E 's#(://[^:/@]*:)[^@]*@#\1xxxxx@#')

# answers reports whether an AMQP 0-9-1 broker answers the protocol header
# with a frame (its connection.start), not merely whether the port is open.
answers() {
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "AMQP\0\0\x09\x01" >&3
		[ "$(head -c 1 <&3 | od -An -tx1 | tr -d " ")" = 01 ]
	' _ "$host" "$port" 2>/dev/null
}

wait_answers() {
	for _ in $(seq 120); do
		answers && return 0
		sleep 1
	done
	return 1
}

if answers; then
	exit 0
fi

case $host in
127.0.0.1 | localhost | ::1 | "[::1]") ;;
*)
	echo "broker: nothing answers at $redacted; start that broker or set AMQP_URL" >&2
	exit 1
	;;
esac

if ! command -v rabbitmq-server >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "broker: RabbitMQ is not installed; install it (Debian: apt-get install rabbitmq-server) or set AMQP_URL" >&2
		exit 1
	fi
	echo "broker: installing rabbitmq-server from Debian's packages" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q rabbitmq-server >/dev/null ||
		{ apt-get update -q >/dev/null && apt-get install -y -q rabbitmq-server >/dev/null; }
	answers && exit 0 # the package's own scripts may have started it
fi

if command -v rabbitmq-diagnostics >/dev/null 2>&1 && rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
	# The Erlang node runs but the broker application is stopped.
	echo "broker: starting the RabbitMQ application" >&2
	rabbitmqctl -q start_app >/dev/null
else
	echo "broker: starting rabbitmq-server" >&2
	rabbitmq-server -detached
fi
if ! wait_answers; then
	echo "broker: RabbitMQ did not answer at $redacted within 120s; see /var/log/rabbitmq" >&2
	exit 1
fi
echo "broker: RabbitMQ answers at $redacted" >&2
