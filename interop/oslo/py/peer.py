"""What server.py and client.py share: the transport of an oslo.messaging
peer configured as the Go peer's runtime.OsloConfig is.

Options (argv after the script's own): --url URL --exchange NAME
--durable --quorum --delivery-limit N --auto-delete
"""
import argparse
import logging
import os
import threading

from oslo_config import cfg
import oslo_messaging as om

logging.basicConfig(level=os.environ.get('LOGLEVEL', 'WARNING'))


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument('--url', default=os.environ.get('TRANSPORT_URL', 'rabbit://guest:guest@127.0.0.1:5672/'))
    p.add_argument('--exchange', default='openstack')
    p.add_argument('--topic', default='calc')
    p.add_argument('--durable', action='store_true', help='amqp_durable_queues')
    p.add_argument('--quorum', action='store_true', help='rabbit_quorum_queue')
    p.add_argument('--delivery-limit', type=int, default=0, help='rabbit_quorum_delivery_limit')
    p.add_argument('--auto-delete', action='store_true', help='amqp_auto_delete')
    return p


def transport(args):
    """An RPC transport with the options of args, set as a deployment's
    oslo_messaging_rabbit section would set them."""
    om.set_transport_defaults(control_exchange=args.exchange)
    conf = cfg.CONF
    conf([], project='amqprpc-interop')
    t = om.get_rpc_transport(conf, url=args.url, allowed_remote_exmods=['calcerrors'])
    group = conf.oslo_messaging_rabbit
    for name, value in [('amqp_durable_queues', args.durable),
                        ('rabbit_quorum_queue', args.quorum),
                        ('rabbit_quorum_delivery_limit', args.delivery_limit),
                        ('amqp_auto_delete', args.auto_delete)]:
        conf.set_override(name, value, group='oslo_messaging_rabbit')
    assert group.amqp_durable_queues == args.durable
    return t


def exit_within(seconds):
    """Ends the process after seconds, whatever still runs: oslo.messaging's
    listeners stop only at their next poll."""
    t = threading.Timer(seconds, os._exit, (0,))
    t.daemon = True
    t.start()
