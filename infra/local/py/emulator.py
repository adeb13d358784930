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
