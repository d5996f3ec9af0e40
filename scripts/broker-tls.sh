#!/usr/bin/env bash
# Gives the local RabbitMQ a TLS listener on 127.0.0.1:5671 that requires a
# client certificate, with a self-signed CA made here (internal/tlsgen), for
# the TLS tests. It restarts the broker only when its configuration changes.
# A broker that is not local, or not ours to configure, is left alone: the
# TLS tests then skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${AMQPRPC_TLS_DIR:-/etc/rabbitmq/amqprpc-tls}
conf=/etc/rabbitmq/conf.d/90-amqprpc-tls.conf
case ${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/} in
*@127.0.0.1* | *@localhost* | *//127.0.0.1* | *//localhost*) ;;
*) echo "broker-tls: AMQP_URL is not local; TLS tests will skip" >&2; exit 0 ;;
esac
if [ "$(id -u)" != 0 ] || [ ! -d /etc/rabbitmq ]; then
	echo "broker-tls: cannot configure /etc/rabbitmq (not root, or no local RabbitMQ); TLS tests will skip" >&2
	exit 0
fi

[ -f "$dir/ca.pem" ] || go run ./internal/tlsgen -dir "$dir"
want="listeners.ssl.default = 127.0.0.1:5671
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.pem
ssl_options.keyfile = $dir/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
	mkdir -p "$(dirname "$conf")"
	printf '%s\n' "$want" >"$conf"
	echo "broker-tls: TLS listener configured; restarting RabbitMQ" >&2
	rabbitmqctl -q stop >/dev/null 2>&1 || true
	for _ in $(seq 60); do pgrep -u rabbitmq beam.smp >/dev/null || break; sleep 0.5; done
fi
scripts/broker.sh
for _ in $(seq 60); do
	timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5671' 2>/dev/null && exit 0
	sleep 0.5
done
echo "broker-tls: nothing listens on 127.0.0.1:5671; see /var/log/rabbitmq" >&2
exit 1
