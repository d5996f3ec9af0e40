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
# openstack with --oslo), --vhost VHOST (/). RABBITMQCTL is the command that
# runs rabbitmqctl (rabbitmqctl; scripts/cluster.sh ctl 1 for a test node).
#
# set_permissions and set_topic_permissions replace what a user had in the
# virtual host: give a user that serves or calls several topics all of them
# in one command. Topics are matched whole; a topic with dots in it is
# covered by the server permissions of a topic it begins with.
set -euo pipefail

oslo= exchange= vhost=/
while [ $# -gt 0 ]; do
	case $1 in
	--oslo) oslo=1 ;;
	--exchange) exchange=$2; shift ;;
	--vhost) vhost=$2; shift ;;
	*) break ;;
	esac
	shift
done
[ -n "$exchange" ] || exchange=$([ -n "$oslo" ] && echo openstack || echo amqprpc)
read -r -a ctl <<<"${RABBITMQCTL:-rabbitmqctl}"

usage() { sed -n '2,20p' "$0" >&2; exit 2; }
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

server() {
	local user=$1 x t
	shift
	x=$(quote "$exchange") t=$(any "$@")
	if [ -n "$oslo" ]; then
		# exchanges: the control exchange and TOPIC_fanout; queues: TOPIC,
		# TOPIC.SERVER, TOPIC_fanout_ID; replies to reply_ID queues through
		# the default exchange
		set_perms "$user" \
			"^($x|$t(\\..+)?|${t}_fanout(_.+)?)\$" \
			"^($t(\\..+)?|${t}_fanout_.+|amq\\.default)\$" \
			"^($x|$t(\\..+)?|${t}_fanout(_.+)?)\$"
	else
		# exchanges: EXCHANGE and EXCHANGE.fanout.TOPIC; queues: TOPIC,
		# TOPIC.SERVER_ID, EXCHANGE.fanout.TOPIC_ID; replies to the callers'
		# queues through the default exchange; and a request to its own name
		# at start (is another server of that name serving?)
		set_perms "$user" \
			"^($x|$x\\.fanout\\.$t(_.+)?|$t|$t\\..+)\$" \
			"^($x|$t|$t\\..+|$x\\.fanout\\.${t}_.+|amq\\.default)\$" \
			"^($x|$x\\.fanout\\.$t(_.+)?|$t|$t\\..+)\$"
	fi
	# binding TOPIC and TOPIC.SERVER to the request exchange; publishing
	# to TOPIC.SERVER alone (amqprpc's servers ask for their name at start)
	if [ -n "$oslo" ]; then
		set_topic_perms "$user" '^$' "^$t(\\..+)?\$"
	else
		set_topic_perms "$user" "^$t\\..+\$" "^$t(\\..+)?\$"
	fi
}

client() {
	local user=$1 x t
	shift
	x=$(quote "$exchange") t=$(any "$@")
	if [ -n "$oslo" ]; then
		# its reply queue, reply_ID, and TOPIC_fanout for casts to every
		# server; requests to the control exchange
		set_perms "$user" \
			"^(reply_.+|${t}_fanout)\$" \
			"^($x|${t}_fanout)\$" \
			"^reply_.+\$"
	else
		# its reply queue, named by the broker; EXCHANGE.fanout.TOPIC for
		# fanouts and gathers; requests to EXCHANGE
		set_perms "$user" \
			"^(amq\\.gen-.+|$x\\.fanout\\.$t)\$" \
			"^($x|$x\\.fanout\\.$t)\$" \
			'^amq\.gen-.+$'
	fi
	# publishing to TOPIC and TOPIC.SERVER on the request exchange
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
