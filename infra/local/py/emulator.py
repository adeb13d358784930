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
import io
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
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
    # Set by the main process on the second one it starts (split_dynamodb); not for users.
    parser.add_argument("--role", choices=("dynamodb",), help=argparse.SUPPRESS)
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="serve DynamoDB in this process too, instead of in a second emulator process (see split_dynamodb)",
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


# Services answered by another emulator process: signing name -> its base URL (split_dynamodb).
FORWARDED: dict[str, str] = {}
# What `GET /_leadflow/endpoints` answers: where each forwarded service is served directly, and
# the pid of the process serving it (benches read its CPU time).
ENDPOINTS: dict[str, dict[str, object]] = {}
ENDPOINTS_PATH = "/_leadflow/endpoints"


def split_dynamodb(host: str, ready_timeout: float, verbose: bool):
    """Serve DynamoDB from a second emulator process, so that it has a core of its own.

    moto runs every service in one Python process under one interpreter lock: under the load
    bench (docs/performance.md, "Load bench") it sat at 100 % of one core while the other core
    idled. DynamoDB answers most of a lead's requests and needs nothing from the other
    services, so it moves to a child process of its own. This process keeps answering DynamoDB
    requests by passing them on (so `aws dynamodb ... --endpoint-url` on the main port still
    works), tells clients the child's address at `GET /_leadflow/endpoints` (the local stack's
    SDK clients then go there directly: `AWS_ENDPOINT_URL_DYNAMODB`), and creates every table
    that CloudFormation creates here in the child too. The child exits with this process (it
    watches the stdin pipe this process holds).
    """
    import subprocess

    child = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--host",
            host,
            "--port",
            "0",
            "--role",
            "dynamodb",
            "--ready-timeout",
            str(ready_timeout),
        ]
        + (["--verbose"] if verbose else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )

    def wait_ready() -> str:
        line = child.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            child.kill()
            raise RuntimeError(f"the DynamoDB emulator process did not start (said {line!r})")
        url = line.removeprefix("READY ")
        FORWARDED["dynamodb"] = url
        ENDPOINTS["dynamodb"] = {"url": url, "pid": child.pid}
        mirror_cloudformation_tables(url)
        return url

    return child, wait_ready


class Forward:
    """A WSGI app that passes each request on, as it came, to another emulator process."""

    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}

    def __init__(self, base_url: str):
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.local = threading.local()

    def exchange(self, method, target, body, headers):
        import http.client

        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive connection the other side closed: one fresh try.
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        target = environ.get("REQUEST_URI") or urllib.parse.quote(environ.get("PATH_INFO", "/"))
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        status, reason, answer_headers, answer = self.exchange(environ["REQUEST_METHOD"], target, body, headers)
        kept = [(k, v) for k, v in answer_headers if k.lower() not in self.HOP_BY_HOP]
        start_response(f"{status} {reason}", kept + [("Content-Length", str(len(answer)))])
        return [answer]


def endpoints_app(environ, start_response):
    import json

    body = json.dumps(ENDPOINTS).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def mirror_cloudformation_tables(url: str) -> None:
    """Create (and delete) in the DynamoDB process each table CloudFormation handles here.

    Provisioning stays one CloudFormation stack on the main endpoint; moto's CloudFormation
    creates tables in this process's backend (which keeps them for `Fn::GetAtt`), and the same
    table, by name and definition, is created where DynamoDB is served.
    """
    import boto3
    from moto.dynamodb.models.table import Table

    clients: dict[str, object] = {}

    def client(region: str):
        if region not in clients:
            clients[region] = boto3.client(
                "dynamodb",
                endpoint_url=url,
                region_name=region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
        return clients[region]

    create, delete = Table.create_from_cloudformation_json, Table.delete_from_cloudformation_json

    def create_here_and_there(resource_name, cloudformation_json, account_id, region_name, **kwargs):
        table = create.__func__(Table, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json["Properties"]
        request = {"TableName": resource_name}
        for key in ("KeySchema", "AttributeDefinitions", "ProvisionedThroughput", "Tags"):
            if properties.get(key):
                request[key] = properties[key]
        # CloudFormation's spelling differs from the API's in places, and carries settings
        # (contributor insights, ...) that CreateTable does not take: keep what an index is.
        index_keys = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if properties.get(key):
                request[key] = [{k: v for k, v in index.items() if k in index_keys} for index in properties[key]]
        sse = properties.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {
                "Enabled": bool(sse.get("SSEEnabled")),
                **{k: v for k, v in sse.items() if k in ("SSEType", "KMSMasterKeyId")},
            }
        request["BillingMode"] = properties.get("BillingMode", "PROVISIONED")
        if properties.get("StreamSpecification"):
            request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
        client(region_name).create_table(**request)
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client(region_name).update_time_to_live(TableName=resource_name, TimeToLiveSpecification=ttl)
        return table

    def delete_there(name: str, region_name: str) -> None:
        try:
            client(region_name).delete_table(TableName=name)
        except client(region_name).exceptions.ResourceNotFoundException:
            pass

    def delete_here_and_there(resource_name, cloudformation_json, account_id, region_name):
        delete.__func__(Table, resource_name, cloudformation_json, account_id, region_name)
        delete_there(resource_name, region_name)

    # Deleting a stack goes through the table object instead.
    delete_table_object = Table.delete

    def delete_object_here_and_there(self, account_id, region_name):
        delete_table_object(self, account_id, region_name)
        delete_there(self.name, region_name)

    Table.delete = delete_object_here_and_there

    Table.create_from_cloudformation_json = classmethod(
        lambda cls, *args, **kwargs: create_here_and_there(*args, **kwargs)
    )
    Table.delete_from_cloudformation_json = classmethod(
        lambda cls, *args, **kwargs: delete_here_and_there(*args, **kwargs)
    )


def make_dynamodb_answers_cheap() -> None:
    """Write the answers of DynamoDB's item operations as JSON directly.

    moto serialises every answer by walking the operation's output shape from the botocore
    model, attribute by attribute. Profiled under the load bench with DynamoDB in its own
    process (docs/performance.md, "Load bench"), that walk was 23 % of the process's core: an
    item's attribute map is walked value by value. The results of these operations are already
    in DynamoDB's wire format (moto keeps items as wire JSON), so `json.dumps` writes the same
    document. Anything it cannot write as is (bytes, datetimes, moto's own types) goes the
    model's way, as do errors and every other operation. `LEADFLOW_EMULATOR_CHECK_ANSWERS=1`
    writes each answer both ways and logs any difference (how this was checked).
    """
    import json

    from moto.core.serialize import BaseJSONSerializer

    item_operations = {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
    check = os.environ.get("LEADFLOW_EMULATOR_CHECK_ANSWERS") == "1"
    by_model = BaseJSONSerializer._serialize_result
    make_dynamodb_requests_cheap(item_operations, check)

    def serialize_result(self, resp, result):
        operation = self.operation_model
        if (
            not isinstance(result, dict)
            or operation.name not in item_operations
            or operation.service_model.service_name != "dynamodb"
        ):
            return by_model(self, resp, result)
        try:
            body = json.dumps({k: v for k, v in result.items() if v is not None}, separators=(",", ":"))
        except (TypeError, ValueError):
            return by_model(self, resp, result)
        if check:
            expected = by_model(self, {"status_code": resp["status_code"], "headers": {}, "body": ""}, result)
            if json.loads(expected["body"] or "{}") != json.loads(body):
                log(f"answer differs for {operation.name}: model {expected['body'][:300]} direct {body[:300]}")
        resp["body"] = body
        resp["headers"]["Content-Type"] = self._get_protocol_specific_content_type()
        return resp

    BaseJSONSerializer._serialize_result = serialize_result


def make_dynamodb_requests_cheap(item_operations: set[str], check: bool) -> None:
    """Read the requests of DynamoDB's item operations as JSON directly (see the answers above).

    moto parses every request against the operation's input shape (12.6 % of the DynamoDB
    process with `setup_class`), which for DynamoDB's JSON protocol gives the same dict as
    `json.loads` except for binary values (base64 decoded) and timestamps; item operations have
    no timestamps, and a request that mentions a binary type goes the model's way.
    """
    import json

    from moto.dynamodb.responses import DynamoHandler

    by_model = DynamoHandler.parse_parameters

    def parse_parameters(self, request):
        target = request.headers.get("X-Amz-Target", "")
        body = request.get_data(cache=True)
        if target.rpartition(".")[2] not in item_operations or b'"B' in body:
            return by_model(self, request)
        try:
            self.params = json.loads(body)
        except ValueError:
            return by_model(self, request)
        if check:
            direct = self.params
            by_model(self, request)
            if self.params != direct:
                log(f"request read differently for {target}")
            self.params = direct

    DynamoHandler.parse_parameters = parse_parameters


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
        if path == ENDPOINTS_PATH:
            return endpoints_app
        if found is not None and found.group(2) in FORWARDED:
            apps = self.__dict__.setdefault("_leadflow_forwards", {})
            service = found.group(2)
            if service not in apps:
                apps[service] = Forward(FORWARDED[service])
            return apps[service]
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


def make_action_lookup_cheap() -> None:
    """Find a request's handler method without listing the handler class's methods every time.

    moto's BaseResponse.call_action lists every function of the response class
    (inspect.getmembers) on each request, only to check that the action is one of them.
    Profiled with a serial DynamoDB process under GetItem load, that listing was 11 % of the
    process. A class's methods do not change while the emulator runs: list them once per class.
    """
    import functools

    import moto.core.responses as responses

    original = responses.method_names_from_class

    @functools.lru_cache(maxsize=None)
    def method_names_from_class(clazz) -> frozenset[str]:
        return frozenset(original(clazz))

    responses.method_names_from_class = method_names_from_class


class KeepAliveServer:
    """An HTTP/1.1 server on one thread: many kept-alive connections, one request at a time.

    For the DynamoDB process, whose requests never wait. werkzeug's development server answers
    HTTP/1.0 to moto's request handler and closes every connection, so each request paid for a
    connect, an accept and a close, and with a thread per connection for their start-up and
    their waits for the interpreter lock as well. Profiled under the load bench, werkzeug's
    serving code around the application was about 30 % of the process. Here a selector watches
    every connection; a complete request is answered on the spot and the connection stays open.
    Enough of HTTP/1.1 for SDK clients: Content-Length bodies, `Expect: 100-continue`,
    `Connection: close`; a chunked request body is refused with 411.
    """

    MAX_HEADER = 64 * 1024

    def __init__(self, host: str, port: int, app):
        from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY

        self.preserved_names_key = PRESERVED_HEADER_NAMES_ENVIRON_KEY
        self.app = app
        self.listener = socket.create_server((host, port), backlog=1024)
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.stopped = threading.Event()
        self.done = threading.Event()

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        try:
            while not self.stopped.is_set():
                for key, _ in self.selector.select(poll_interval):
                    if key.data is None:
                        self.accept()
                    else:
                        self.read(key.fileobj, key.data)
        finally:
            self.done.set()

    def shutdown(self) -> None:
        self.stopped.set()
        self.done.wait(5)

    def server_close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()

    def accept(self) -> None:
        try:
            conn, peer = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, {"buffer": bytearray(), "peer": peer})

    def close(self, conn) -> None:
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def read(self, conn, state) -> None:
        try:
            chunk = conn.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close(conn)
            return
        buffer = state["buffer"]
        buffer += chunk
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self.MAX_HEADER:
                    self.close(conn)
                return
            try:
                head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
                method, target, version = head[0].split(" ", 2)
                headers = [tuple(part.strip() for part in line.split(":", 1)) for line in head[1:] if ":" in line]
            except ValueError:
                if self.respond(conn, "400 Bad Request", [], [b""], close=True):
                    self.close(conn)
                return
            lower = {name.lower(): value for name, value in headers}
            if "chunked" in lower.get("transfer-encoding", "").lower():
                if self.respond(conn, "411 Length Required", [], [b""], close=True):
                    self.close(conn)
                return
            length = int(lower.get("content-length") or 0)
            if len(buffer) < end + 4 + length:
                if lower.get("expect", "").lower() == "100-continue" and not state.get("continued"):
                    state["continued"] = True
                    self.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            state["continued"] = False
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            close = lower.get("connection", "").lower() == "close" or (
                version == "HTTP/1.0" and lower.get("connection", "").lower() != "keep-alive"
            )
            if not self.handle(conn, state["peer"], method, target, version, headers, body, close):
                return
            if close:
                self.close(conn)
                return

    def handle(self, conn, peer, method, target, version, headers, body, close) -> bool:
        path, _, query = target.partition("?")
        host, port = self.server_address[:2]
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": version,
            "REMOTE_ADDR": peer[0],
            "REMOTE_PORT": str(peer[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        names = {}
        for name, value in headers:
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
                continue
            key = "HTTP_" + key
            names.setdefault(key, name)
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        environ[self.preserved_names_key] = names
        answer = {}

        def start_response(status, response_headers, exc_info=None):
            answer["status"], answer["headers"] = status, response_headers
            return lambda data: answer.setdefault("written", []).append(data)

        try:
            result = self.app(environ, start_response)
            try:
                chunks = answer.pop("written", []) + [bytes(part) for part in result]
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception as exc:  # moto answers its own errors; anything else must not kill the server
            logging.getLogger("emulator").exception("request failed")
            chunks = [json.dumps({"__type": "InternalFailure", "message": str(exc)}).encode()]
            answer = {"status": "500 Internal Server Error", "headers": [("Content-Type", "application/x-amz-json-1.0")]}
        return self.respond(conn, answer["status"], answer["headers"], chunks, close)

    def respond(self, conn, status, headers, chunks, close) -> bool:
        body = b"".join(chunks)
        lines = [f"HTTP/1.1 {status}"]
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close" if close else "Connection: keep-alive")
        return self.send(conn, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def send(self, conn, data: bytes) -> bool:
        # Blocking for the write: answers are small and clients on loopback read them at once.
        try:
            conn.setblocking(True)
            conn.sendall(data)
            conn.setblocking(False)
            return True
        except OSError:
            self.close(conn)
            return False


def make_server(host: str, port: int, threaded: bool):
    """Bind the WSGI server in this thread, so a busy port is reported here and not lost in a thread.

    `threaded=False` serves with `KeepAliveServer` on one thread. That suits a process whose
    requests never wait (DynamoDB: no long polling): with a thread per connection, moto's work
    is still done one request at a time under the interpreter lock, and the threads only add
    their start-up and their waits for the lock. Measured with wrk (GetItem, 1,000-item table,
    8 connections): 760 requests/s with werkzeug's threads, 1,150 with werkzeug answering one
    connection after the other, both at one full core. SQS's ReceiveMessage waits up to
    WaitTimeSeconds, so the main process keeps werkzeug's threads.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server as werkzeug_make_server

    app = DomainDispatcherApplication(create_backend_app)
    if not threaded:
        return app, KeepAliveServer(host, port, app)
    try:
        return app, werkzeug_make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    except SystemExit as exc:
        # werkzeug prints the OS error itself and calls sys.exit(1) when bind() fails.
        raise OSError(errno.EADDRINUSE, f"cannot bind {host}:{port}") from exc


def warm(app, services) -> None:
    """Build moto's per-service apps ahead of the first requests (moto's own lazy path, under its lock)."""
    started = time.monotonic()
    for service in services:
        try:
            with app.lock:
                backend = app.get_backend_for_host(f"{service}.us-east-1.amazonaws.com")
                if backend and backend not in app.app_instances:
                    app.app_instances[backend] = app.create_app(backend)
        except Exception as exc:  # an optimisation only; requests still build it lazily
            log(f"warming {service} failed (harmless): {exc}")
            return
    logging.getLogger("emulator").debug("warmed %s in %.2fs", ", ".join(services), time.monotonic() - started)


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
    make_dynamodb_answers_cheap()
    make_action_lookup_cheap()
    dynamodb_process = None
    if not args.single_process and args.role is None:
        # Started first: it imports moto while this process binds and warms up.
        dynamodb_process, dynamodb_ready = split_dynamodb(args.host, args.ready_timeout, args.verbose)
    try:
        app, server = make_server(args.host, args.port, threaded=args.role != "dynamodb")
    except OSError as exc:
        if dynamodb_process is not None:
            dynamodb_process.kill()
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
            if dynamodb_process is not None:
                dynamodb_ready()
        except (TimeoutError, RuntimeError) as exc:
            log(str(exc))
            return EXIT_START_FAILED

        sys.stdout.write(f"READY {url}\n")
        sys.stdout.flush()
        # Nothing else may reach the parent's stdout reader: send any later prints to stderr.
        sys.stdout = sys.stderr
        if not args.no_warm:
            services = ("dynamodb",) if args.role == "dynamodb" else WARM_SERVICES
            threading.Thread(target=warm, args=(app, services), name="moto-warm", daemon=True).start()

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
        if dynamodb_process is not None:
            dynamodb_process.kill()


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Nothing is left to clean up once the server is shut down; skip tearing down moto's modules.
    os._exit(code)
