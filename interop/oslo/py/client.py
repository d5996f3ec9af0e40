#!/usr/bin/python3
"""An oslo.messaging RPC client that calls a Calc server (Go or Python)
in every way the interop tests check, and prints one JSON line per case:
{"case": ..., "result": ...} or {"case": ..., "error": {"module", "class",
"exc_type", "message"}}.

Usage: client.py --server NAME [--only CASE,...] [peer options]
"""
import json
import time

import oslo_messaging as om

import calcerrors
import peer

CTXT = {'user_id': 'u1', 'project_id': 'p1', 'request_id': 'req-abc',
        'global_request_id': 'req-global', 'auth_token': 'secret-token'}


def run(name, fn):
    try:
        out = {'case': name, 'result': fn()}
    except Exception as e:
        out = {'case': name, 'error': {
            'module': type(e).__module__, 'class': type(e).__name__,
            'exc_type': getattr(e, 'exc_type', None),
            'calc_error': isinstance(e, calcerrors.CalcError),
            'message': str(e).splitlines()[0] if str(e) else ''}}
    print(json.dumps(out), flush=True)


def until(client, text, deadline=10):
    """Polls notes until text is among them: casts are asynchronous."""
    end = time.time() + deadline
    while True:
        notes = client.call(CTXT, 'notes')
        if text in notes or time.time() > end:
            return text in notes
        time.sleep(0.05)


def main():
    p = peer.parser('an oslo.messaging Calc client')
    p.add_argument('--server', required=True)
    p.add_argument('--only', default='')
    p.add_argument('--calls', type=int, default=20)
    args = p.parse_args()
    transport = peer.transport(args)
    c = om.get_rpc_client(transport, om.Target(topic=args.topic), timeout=15)
    cases = [
        ('call', lambda: c.call(CTXT, 'add', v1=2, v2=3)),
        ('call_versioned', lambda: c.prepare(version='1.1').call(CTXT, 'add', v1=2, v2=3)),
        ('server_call', lambda: c.prepare(server=args.server).call(CTXT, 'name')),
        ('cast', lambda: (c.cast(CTXT, 'notify_me', text='hello cast'), until(c, 'hello cast'))[1]),
        ('server_cast', lambda: (c.prepare(server=args.server).cast(CTXT, 'notify_me', text='hello server'),
                                 until(c.prepare(server=args.server), 'hello server'))[1]),
        ('fanout', lambda: (c.prepare(fanout=True).cast(CTXT, 'notify_me', text='hello fanout'),
                            until(c.prepare(server=args.server), 'hello fanout'))[1]),
        ('too_new', lambda: c.prepare(version='1.9').call(CTXT, 'add', v1=1, v2=1)),
        ('other_major', lambda: c.prepare(version='2.0').call(CTXT, 'add', v1=1, v2=1)),
        ('nosuch', lambda: c.call(CTXT, 'nosuch')),
        ('declared_error', lambda: c.call(CTXT, 'fail', why='boom')),
        ('builtin_error', lambda: c.call(CTXT, 'fail_builtin')),
        ('bad_args', lambda: c.call(CTXT, 'add', v1=1, v3=2)),
        ('context', lambda: c.call(CTXT, 'whoami')),
        ('namespace', lambda: c.prepare(namespace='admin', version='2.0').call(CTXT, 'ping')),
        ('call_monitor', lambda: c.prepare(timeout=20, call_monitor_timeout=2).call(
            CTXT, 'slow_add', v1=1, v2=2, delay=4)),
        # No call monitor: the server must send no heartbeat, which would
        # crash the wait of a client that set none.
        ('no_monitor', lambda: c.prepare(timeout=20).call(CTXT, 'slow_add', v1=2, v2=2, delay=3)),
        ('names', lambda: sorted(set(c.call(CTXT, 'name') for _ in range(args.calls)))),
    ]
    only = set(filter(None, args.only.split(',')))
    for name, fn in cases:
        if not only or name in only:
            run(name, fn)
    peer.exit_within(2)
    transport.cleanup()


if __name__ == '__main__':
    main()
