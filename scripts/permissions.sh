#!/usr/bin/env bash
# The RabbitMQ permissions that amqprpc clients and servers need, and no
# more (docs/SECURITY.md explains each):
#
#   scripts/permissions.sh [options] server USER TOPIC...   what a server of the topics needs
#   scripts/permissions.sh [options] client USER TOPIC...   what a client of the topics needs
#   scripts/permissions.sh [options] demo TOPIC             users TOPIC-service, TOPIC-caller and
#                                                           TOPIC-stranger (a client of TOPIC-other),
#                                                           each with its name as its password
#
# Options: --oslo (oslo.messaging's topology), --exchange NAME (amqprpc, or
# openstack with --oslo), --vhost VHOST (/), --declared (the request
# exchange is there, declared by the operator or a first server: servers
# get no configure permission on it, which would let them delete it).
# RABBITMQCTL is the command that runs rabbitmqctl (rabbitmqctl;
# scripts/cluster.sh ctl 1 for a test node).
#
# set_permissions and set_topic_permissions replace what a user had in the
# virtual host: give a user that serves or calls several topics all of them
# in one command. Names are matched whole, but for a topic's servers' own
# queues and bindings (TOPIC.SERVER) and its clients' calls to one server,
# which a topic named TOPIC.SOMETHING would share: give topics that must
# be kept apart names of which none begins with another and a dot.
set -euo pipefail

oslo= exchange= vhost=/ declared=
while [ $# -gt 0 ]; do
	case $1 in
	--oslo) oslo=1 ;;
	--declared) declared=1 ;;
	--exchange) exchange=$2; shift ;;
	--vhost) vhost=$2; shift ;;
	*) break ;;
	esac
	shift
done
[ -n "$exchange" ] || exchange=$([ -n "$oslo" ] && echo openstack || echo amqprpc)
read -r -a ctl <<<"${RABBITMQCTL:-rabbitmqctl}"

usage() { sed -n '2,26p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage

# quote escapes a name for a regular expression.
quote() { printf '%s' "$1" | sed 's/[].[\\*^$()+?{}|]/\\&/g'; }

# any joins the quoted topics as one alternative: (t1|t2).
any() {
	local out= t
	for t in "$@"; do out+="${out:+|}$(quote "$t")"; done
	printf '(%s)' "$out"
}

set_perms() { # user configure write read
	"${ctl[@]}" set_permissions -p "$vhost" "$1" "$2" "$3" "$4" >/dev/null
}

set_topic_perms() { # user write read
	"${ctl[@]}" set_topic_permissions -p "$vhost" "$1" "$exchange" "$2" "$3" >/dev/null
}

# id matches the id amqprpc puts in the names of a connection's own queues.
id='[0-9a-f]{32}'

server() {
	local user=$1 x t shared
	shift
	x=$(quote "$exchange") t=$(any "$@")
	# the request exchange, shared by every topic: declared by the first
	# server, or by the operator (--declared, and no configure on it)
	shared="$x|"
	[ -z "$declared" ] || shared=
	if [ -n "$oslo" ]; then
		# exchanges: the control exchange and TOPIC_fanout; queues: TOPIC,
		# TOPIC.SERVER, TOPIC_fanout_ID; replies to the callers' reply_ID
		# queues through the default exchange
		set_perms "$user" \
			"^(${shared}$t|$t\\..+|${t}_fanout|${t}_fanout_$id)\$" \
			"^($t|$t\\..+|${t}_fanout_$id|amq\\.default)\$" \
			"^($x|$t|$t\\..+|${t}_fanout|${t}_fanout_$id)\$"
		set_topic_perms "$user" '^$' "^$t(\\..+)?\$"
	else
		# exchanges: EXCHANGE and EXCHANGE.fanout.TOPIC; queues: TOPIC,
		# TOPIC.SERVER_ID, EXCHANGE.fanout.TOPIC_ID; replies to the callers'
		# queues through the default exchange; and, at start, a request to
		# its own name (does another server of that name serve?)
		set_perms "$user" \
			"^(${shared}$x\\.fanout\\.$t|$x\\.fanout\\.${t}_$id|$t|$t\\..+_$id)\$" \
			"^($x|$t|$t\\..+_$id|$x\\.fanout\\.${t}_$id|amq\\.default)\$" \
			"^($x|$x\\.fanout\\.$t|$x\\.fanout\\.${t}_$id|$t|$t\\..+_$id)\$"
		set_topic_perms "$user" "^$t\\..+\$" "^$t(\\..+)?\$"
	fi
}

client() {
	local user=$1 x t
	shift
	x=$(quote "$exchange") t=$(any "$@")
	if [ -n "$oslo" ]; then
		# its reply queue, reply_ID; TOPIC_fanout, declared before each
		# fanout (auto-delete: it may have gone); requests to the control
		# exchange
		set_perms "$user" \
			"^(reply_$id|${t}_fanout)\$" \
			"^($x|${t}_fanout)\$" \
			"^reply_$id\$"
	else
		# its reply queue, named by the broker; requests to EXCHANGE, and
		# to EXCHANGE.fanout.TOPIC for fanouts and gathers (declared by the
		# topic's servers)
		set_perms "$user" \
			'^amq\.gen-.+$' \
			"^($x|$x\\.fanout\\.$t)\$" \
			'^amq\.gen-.+$'
	fi
	# publishing to TOPIC, and to one server, TOPIC.SERVER
	set_topic_perms "$user" "^$t(\\..+)?\$" '^$'
}

add_user() { # name: its password is its name
	"${ctl[@]}" delete_user "$1" >/dev/null 2>&1 || true
	"${ctl[@]}" add_user "$1" "$1" >/dev/null
}

case $1 in
server) shift; server "$@" ;;
client) shift; client "$@" ;;
demo)
	topic=$2
	for u in "$topic-service" "$topic-caller" "$topic-stranger"; do add_user "$u"; done
	server "$topic-service" "$topic"
	client "$topic-caller" "$topic"
	client "$topic-stranger" "$topic-other"
	echo "permissions: $topic-service serves $topic; $topic-caller calls it; $topic-stranger calls $topic-other only" >&2
	;;
*) usage ;;
esac
