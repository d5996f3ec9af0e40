#!/usr/bin/python3
"""An oslo.messaging RPC server of the Calc and Admin endpoints that
interop/oslo/calc.go mirrors. Prints 'listening' once it consumes.

Usage: server.py --server NAME [peer options]
"""
import sys
import threading
import time

import oslo_messaging as om

import calcerrors
import peer


class CalcEndpoint(object):
    target = om.Target(version='1.2')

    def __init__(self, name):
        self.name_ = name
        self.lock = threading.Lock()
        self.notes_ = []

    def add(self, ctxt, v1, v2):
        return v1 + v2

    def notify_me(self, ctxt, text):
        with self.lock:
            self.notes_.append(text)

    def notes(self, ctxt):
        with self.lock:
            return list(self.notes_)

    def slow_add(self, ctxt, v1, v2, delay):
        time.sleep(delay)
        return v1 + v2

    def fail(self, ctxt, why):
        raise calcerrors.CalcError(why)

    def fail_builtin(self, ctxt):
        raise ValueError('bad value', 42)

    def whoami(self, ctxt):
        return ctxt

    def name(self, ctxt):
        return self.name_


class AdminEndpoint(object):
    target = om.Target(namespace='admin', version='2.0')

    def ping(self, ctxt):
        return {'pong': True, 'list': [1, 2.5, 'x', None]}


def main():
    p = peer.parser('an oslo.messaging Calc server')
    p.add_argument('--server', required=True)
    args = p.parse_args()
    transport = peer.transport(args)
    server = om.get_rpc_server(transport, om.Target(topic=args.topic, server=args.server),
                               [CalcEndpoint(args.server), AdminEndpoint()],
                               executor='threading')
    server.start()
    print('listening', flush=True)
    sys.stdin.read()  # until the test closes stdin
    peer.exit_within(3)
    server.stop()
    server.wait()
    transport.cleanup()


if __name__ == '__main__':
    main()
