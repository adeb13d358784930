#!/usr/bin/env python3
"""Run moto's AWS emulator in-process on loopback, tied to the lifetime of its parent.

    python emulator.py --host 127.0.0.1 --port 0

Prints exactly one line, ``READY http://HOST:PORT``, on stdout once the server answers HTTP, then
serves until standard input reaches EOF (the parent holds the pipe, so the emulator dies with it),
or until SIGTERM/SIGINT. ``--port 0`` picks a free port and prints the real one. A busy port is an
error (exit status 2, message on stderr). Everything else this process says goes to stderr.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

# Services a leadflow stack uses. moto builds each service's request router on its first request,
# and its CloudFormation import pulls in every model it can create (about 2 s in all); both are done
# in the background after READY so the first provisioning does not pay for them.
WARM_SERVICES = ("cloudformation", "s3", "iam", "lambda", "sqs", "events", "dynamodb", "sts")

EXIT_PORT_BUSY = 2
EXIT_START_FAILED = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4566, help="port to bind; 0 picks a free one (default 4566)")
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="do not watch stdin; run until SIGTERM/SIGINT (for running by hand with no stdin)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--no-warm", action="store_true", help="do not prepare moto's services in the background after READY"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=30.0, help="seconds to wait for the server to answer (default 30)"
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"emulator: {message}", file=sys.stderr, flush=True)


def make_dynamodb_writes_atomic() -> None:
    """Serialise moto's DynamoDB writes, as DynamoDB does per item.

    moto checks a ConditionExpression and then writes without a lock, so two concurrent
    conditional writes (or transactions) can both pass: a lost update that real DynamoDB never
    allows. leadflow relies on that guarantee (unique e-mails, optimistic versions, outbox
    claims), and its tests check it under concurrency, so the emulator must keep it too.
    """
    from moto.dynamodb.models import DynamoDBBackend

    # First, so that the lock below also covers its snapshot and restore.
    make_transactions_cheap()
    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, __original=original, **kwargs):
            with lock:
                return __original(self, *args, **kwargs)

        locked.__name__ = name
        setattr(DynamoDBBackend, name, locked)


def make_sqs_receive_cheap() -> None:
    """Check a received message's retention without rebuilding every queue attribute.

    For each message it hands out, moto's ReceiveMessage asks for the queue's retention period
    through get_queue_attributes, which computes all attributes, counting the queue's messages
    several times over (ApproximateNumberOfMessages and friends). Profiled under the load bench
    (docs/performance.md, "Load bench") that was 27.6 % of the emulator's core, growing with
    the square of the backlog. The retention period is a plain field of the queue: read it.
    """
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period


def make_sqs_send_cheap() -> None:
    """Send a message without counting the queue's messages three times.

    moto's SendMessage reads one queue attribute (ContentBasedDeduplication) through
    `Queue.attributes`, which also computes ApproximateNumberOfMessages, ...Delayed and
    ...NotVisible by scanning every message of the queue. Profiled under the load bench
    (docs/performance.md, "Load bench"), EventBridge rule deliveries spent about 12 % of the
    emulator's core there. While this thread sends, those three counts (which sending never
    uses) answer 0; GetQueueAttributes and everything else still count.
    """
    from moto.sqs.models import Queue, SQSBackend

    sending = threading.local()
    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        count = getattr(Queue, name).fget

        def counted(self, __count=count):
            return 0 if getattr(sending, "active", False) else __count(self)

        setattr(Queue, name, property(counted))
    send = SQSBackend.send_message

    def send_message(self, *args, **kwargs):
        sending.active = True
        try:
            return send(self, *args, **kwargs)
        finally:
            sending.active = False

    SQSBackend.send_message = send_message


def make_table_queries_use_their_partition() -> None:
    """Answer a query on the table's own key from that partition, not from the whole table.

    moto's Table.query (without an index) lists and sorts every item of the table, then keeps
    those of the queried partition key: a lead's timeline read costs the size of the table.
    While this thread runs such a query, Table.all_items returns only the partition's items
    (sorted the same way), which is all the query keeps anyway. Index queries are unchanged.
    """
    from moto.dynamodb.models.table import Table

    partition = threading.local()
    query = Table.query
    all_items = Table.all_items

    def query_by_partition(self, hash_key, *args, **kwargs):
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        partition.key = (self, hash_key)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            partition.key = None

    def items_of_partition(self):
        key = getattr(partition, "key", None)
        if key is None or key[0] is not self:
            return all_items(self)
        hash_set = self.items.get(key[1])
        if hash_set is None:
            return []
        items = list(hash_set.values()) if self.range_key_attr else [hash_set]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    Table.query = query_by_partition
    Table.all_items = items_of_partition


def make_event_templates_cheap() -> None:
    """Parse each EventBridge input path once, not on every delivery.

    moto turns every event a rule delivers into its target's input through jsonpath_ng, and
    builds a new JSONPath parser (a yacc table) for each path of each delivery: about 13 % of
    the emulator's core under the load bench. The paths are a handful of constants; parsed
    expressions are immutable, so they are cached.
    """
    import functools

    import jsonpath_ng.ext

    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)


def make_dispatch_cached() -> None:
    """Find a request's service once per (region, service, API family), not on every request.

    moto's server picks the backend of each request in `get_application`, under one global
    lock, by trying every service's URL patterns and then reading the signature's credential
    scope. Profiled under the load bench (docs/performance.md, "Load bench") that was about 9 %
    of the emulator's core once SQS and DynamoDB were cheaper, and it holds the lock meanwhile.
    For the services whose backend follows from the credential scope alone (and, for DynamoDB,
    the X-Amz-Target family), the answer never changes, so it is remembered; everything else
    (S3, Lambda, CloudFormation, moto's own API, ...) still goes through moto's dispatch.
    """
    import re

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_application
    scope = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
    by_scope = {"dynamodb", "sqs", "events", "secretsmanager", "sts"}

    def get_application(self, environ):
        found = scope.search(environ.get("HTTP_AUTHORIZATION", ""))
        path = environ.get("PATH_INFO", "")
        if found is None or found.group(2) not in by_scope or path.startswith(("/moto-api", "/latest/")):
            return original(self, environ)
        key = (found.group(1), found.group(2), environ.get("HTTP_X_AMZ_TARGET", "").split(".")[0])
        apps = self.__dict__.setdefault("_leadflow_apps_by_scope", {})
        app = apps.get(key)
        if app is None:
            # Two threads may both miss: both get the same app from moto; a dict write is atomic.
            app = apps[key] = original(self, environ)
        return app

    DomainDispatcherApplication.get_application = get_application


def make_transactions_cheap() -> None:
    """Roll back a cancelled TransactWriteItems by item, not by copying the table.

    moto deep-copies the whole table once per item of every transaction to be able to roll
    back. A table of a few thousand items then makes each transaction cost seconds and
    gigabytes (seen: 15 GB while routing 1,000 leads). Here the table copy is skipped and only
    the items the transaction touches are saved and, if it is cancelled, put back: the same
    all-or-nothing outcome.
    """
    import copy
    import types

    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    # Only the dynamodb models module sees this `copy`; everything else keeps the real one.
    ddb_models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
    transact = DynamoDBBackend.transact_write_items

    def saved_items(backend, transact_items):
        saved = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op["Item"] if op_type == "Put" else op.get("Key", {})
            if table.hash_key_attr not in key:
                continue
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            current = table.get_item(hash_value, range_value) if (range_value or not table.has_range_key) else None
            saved.append((table, hash_value, range_value, copy.deepcopy(current)))
        return saved

    def restore(saved):
        for table, hash_value, range_value, item in reversed(saved):
            if range_value is not None:
                if item is None:
                    table.items.get(hash_value, {}).pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = item
            elif item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item

    def cheap_transact(self, transact_items, *args, **kwargs):
        saved = saved_items(self, transact_items)
        try:
            return transact(self, transact_items, *args, **kwargs)
        except Exception:
            restore(saved)
            raise

    cheap_transact.__name__ = "transact_write_items"
    DynamoDBBackend.transact_write_items = cheap_transact


def make_server(host: str, port: int):
    """Bind the WSGI server in this thread, so a busy port is reported here and not lost in a thread."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server as werkzeug_make_server

    app = DomainDispatcherApplication(create_backend_app)
    try:
        return app, werkzeug_make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    except SystemExit as exc:
        # werkzeug prints the OS error itself and calls sys.exit(1) when bind() fails.
        raise OSError(errno.EADDRINUSE, f"cannot bind {host}:{port}") from exc


def warm(app) -> None:
    """Build moto's per-service apps ahead of the first requests (moto's own lazy path, under its lock)."""
    started = time.monotonic()
    for service in WARM_SERVICES:
        try:
            with app.lock:
                backend = app.get_backend_for_host(f"{service}.us-east-1.amazonaws.com")
                if backend and backend not in app.app_instances:
                    app.app_instances[backend] = app.create_app(backend)
        except Exception as exc:  # an optimisation only; requests still build it lazily
            log(f"warming {service} failed (harmless): {exc}")
            return
    logging.getLogger("emulator").debug("warmed %s in %.2fs", ", ".join(WARM_SERVICES), time.monotonic() - started)


def wait_until_answering(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    raise TimeoutError(f"server at {url} did not answer within {timeout}s: {last_error}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    if not args.verbose:
        # The parent may not drain stderr: keep it to warnings and errors.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"received signal {signum}, shutting down")
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    make_dynamodb_writes_atomic()
    make_sqs_receive_cheap()
    make_sqs_send_cheap()
    make_table_queries_use_their_partition()
    make_event_templates_cheap()
    make_dispatch_cached()
    try:
        app, server = make_server(args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log(f"port {args.port} on {args.host} is already in use; pick another port or pass --port 0")
            return EXIT_PORT_BUSY
        log(f"cannot listen on {args.host}:{args.port}: {exc}")
        return EXIT_START_FAILED

    host, port = server.server_address[:2]
    url_host = f"[{host}]" if ":" in str(host) else host
    url = f"http://{url_host}:{port}"
    # moto builds some callback URLs from MOTO_PORT; make it the real port.
    os.environ["MOTO_PORT"] = str(port)

    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="moto-server", daemon=True
    )
    thread.start()
    try:
        try:
            wait_until_answering(url, args.ready_timeout)
        except TimeoutError as exc:
            log(str(exc))
            return EXIT_START_FAILED

        sys.stdout.write(f"READY {url}\n")
        sys.stdout.flush()
        # Nothing else may reach the parent's stdout reader: send any later prints to stderr.
        sys.stdout = sys.stderr
        if not args.no_warm:
            threading.Thread(target=warm, args=(app,), name="moto-warm", daemon=True).start()

        if args.ignore_stdin:
            while not stop.wait(3600):
                pass
        else:
            stdin = sys.stdin.buffer
            while stdin.read(65536):
                pass
            log("stdin closed, shutting down")
        return 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Nothing is left to clean up once the server is shut down; skip tearing down moto's modules.
    os._exit(code)
