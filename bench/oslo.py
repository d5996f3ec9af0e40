#!/usr/bin/python3
"""The oslo.messaging side of make bench's oslo section: a server of
add(v1, v2), and a client that calls it with N calls in flight, speaking
the same lines to the orchestrator as the Go processes (bench/main.go):

    oslo.py serve  --url URL --topic T --name S          prints "ready"
    oslo.py client --url URL --topic T --inflight N --warmup D --duration D
        prints "start", then one JSON line: calls, errors, seconds, cpu, rss

Run with /usr/bin/python3, which sees Debian's python3-oslo.messaging.
"""
import argparse
import json
import logging
import os
import resource
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging as om

EXCHANGE = 'bench-oslo'  # bench/oslo.go's osloExchange
logging.basicConfig(level=logging.ERROR)


class Calc(object):
    def add(self, ctxt, v1, v2):
        return v1 + v2


def seconds(s):
    """A Go duration such as 3s or 500ms, in seconds."""
    if s.endswith('ms'):
        return float(s[:-2]) / 1000
    if s.endswith('s'):
        return float(s[:-1])
    raise ValueError(s)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    p = argparse.ArgumentParser()
    p.add_argument('mode', choices=['serve', 'client'])
    p.add_argument('--url', required=True)
    p.add_argument('--topic', required=True)
    p.add_argument('--name', default='s1')
    p.add_argument('--inflight', type=int, default=1)
    p.add_argument('--warmup', default='1s')
    p.add_argument('--duration', default='3s')
    a = p.parse_args()
    om.set_transport_defaults(control_exchange=EXCHANGE)
    cfg.CONF([], project='amqprpc-bench')
    transport = om.get_rpc_transport(cfg.CONF, url=a.url.replace('amqp://', 'rabbit://', 1))

    if a.mode == 'serve':
        server = om.get_rpc_server(transport, om.Target(topic=a.topic, server=a.name), [Calc()], executor='threading')
        server.start()
        client = om.get_rpc_client(transport, om.Target(topic=a.topic, server=a.name), timeout=5)
        while True:  # until it answers: its queues exist and it consumes
            try:
                client.call({}, 'add', v1=1, v2=1)
                break
            except om.MessagingTimeout:
                pass
        print('ready', flush=True)
        sys.stdin.read()
        # Stop, but not for longer than the orchestrator waits: oslo.messaging's
        # listeners end at their next poll.
        threading.Timer(3, os._exit, (0,)).start()
        server.stop()
        server.wait()
        transport.cleanup()
        os._exit(0)

    client = om.get_rpc_client(transport, om.Target(topic=a.topic), timeout=10)

    def run(duration):
        end = time.time() + duration
        counts = [[0, 0, None] for _ in range(a.inflight)]

        def worker(w):
            i = w
            while time.time() < end:
                try:
                    if client.call({}, 'add', v1=i, v2=1) != i + 1:
                        raise ValueError('wrong sum')
                    counts[w][0] += 1
                except Exception as e:
                    counts[w][1] += 1
                    counts[w][2] = counts[w][2] or repr(e)
                i += a.inflight

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(a.inflight)]
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errs = [c[2] for c in counts if c[2]]
        return {'calls': sum(c[0] for c in counts), 'errors': sum(c[1] for c in counts),
                'seconds': time.time() - start, 'first_err': errs[0] if errs else ''}

    run(seconds(a.warmup))
    print('start', flush=True)
    c0 = cpu()
    r = run(seconds(a.duration))
    r['cpu'] = cpu() - c0
    r['rss'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r), flush=True)
    os._exit(0)  # its reply queue expires; cleanup would wait for the listener's next poll


if __name__ == '__main__':
    main()
