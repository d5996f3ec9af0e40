#!/usr/bin/env bash
# Makes sure Debian's python3-oslo.messaging is importable by /usr/bin/python3,
# for the tests against the real library (interop/oslo) and make bench's oslo
# section. As root on Debian it installs the package; elsewhere it says what is
# missing, and those tests skip with that message (under CI=true they fail).
set -uo pipefail
py=/usr/bin/python3
if [ -x "$py" ] && "$py" -c 'import oslo_messaging' 2>/dev/null; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "python-oslo: installing Debian's python3-oslo.messaging for the oslo.messaging interop tests"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q python3-oslo.messaging >/tmp/amqprpc-apt.log 2>&1 ||
		{ apt-get update -q >>/tmp/amqprpc-apt.log 2>&1 && apt-get install -y -q python3-oslo.messaging >>/tmp/amqprpc-apt.log 2>&1; } ||
		{ echo "python-oslo: apt-get install python3-oslo.messaging failed (/tmp/amqprpc-apt.log)" >&2; exit 0; }
	exit 0
fi
echo "python-oslo: $py cannot import oslo_messaging and this is not root on Debian: the interop/oslo tests will skip (install python3-oslo.messaging)" >&2
