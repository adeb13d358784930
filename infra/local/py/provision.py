#!/usr/bin/env python3
"""Provision one leadflow stack on the local AWS emulator from template.yaml, and describe it.

    python provision.py --endpoint http://127.0.0.1:4566 --stack-name t1 [--param Key=Value ...]

template.yaml is the only list of resources. It is translated from SAM to CloudFormation with
aws-sam-translator (function code points at a dummy zip uploaded to the emulator's S3), resource
types the emulator's CloudFormation cannot create are dropped (together with whatever refers to
them), Secrets Manager secrets are created directly with generated values (references become
their ARNs), and the stack is created on the emulator. The translation is cached under
$LEADFLOW_CACHE_DIR (default: .local/cache at the repository root), keyed by a hash of
template.yaml, the parameters and this script, so later runs skip the YAML parsing and translation.

Prints one JSON manifest on stdout: physical ids, queue ARNs, the HTTP API's throttles and, for
every function, its binary, the environment the emulator resolved, its HTTP routes, queue event
sources and schedules.
Logs go to stderr. Exit status 1 on any failure, with the stack events when creation failed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import logging
import os
import re
import secrets as pysecrets
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
DEFAULT_TEMPLATE = HERE / ".." / ".." / ".." / "template.yaml"
DEFAULT_CACHE_DIR = REPO_ROOT / ".local" / "cache"

CODE_BUCKET = "leadflow-local-code"
CODE_KEY = "bootstrap.zip"
CACHE_FORMAT = "provision-v2"

# Types the emulator's CloudFormation (moto 5.2) skips: it reports them CREATE_COMPLETE without
# creating anything and leaves references to them unresolved. The HTTP API is served by the Rust
# local runner; queue policies are not enforced by moto. Matched as prefixes.
UNSUPPORTED_TYPE_PREFIXES = ("AWS::ApiGatewayV2::", "AWS::SQS::QueuePolicy")

# Secrets Manager secrets, which moto's CloudFormation does not create either: each is created on
# the emulator's Secrets Manager with a generated value (as GenerateSecretString would) before the
# stack, and references to it are replaced by its ARN, so functions read it as they do in AWS.
EMULATED_SECRET_TYPE = "AWS::SecretsManager::Secret"

# API Gateway's default account-level throttle quota per region: the limit of a route whose
# API sets none.
ACCOUNT_THROTTLE = {"rate_limit": 10000.0, "burst_limit": 5000}

# Hidden outputs added to the translated template, so that the emulator itself resolves what its
# ListStackResources leaves out: queue ARNs, and the name of the bus (moto gives the bus no physical id).
RESOLUTION_OUTPUTS = {"AWS::SQS::Queue": "Arn", "AWS::Events::EventBus": "Name"}
RESOLUTION_PREFIX = "LeadflowLocal"

# Generated names are "<stack>-<LogicalId>-<12 chars>"; SQS truncates queue names to 80 characters,
# so longer stack names could make two queues collide.
STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,47}$")

log = logging.getLogger("provision")


class ProvisionError(Exception):
    pass


# ----------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--endpoint", help="emulator URL, e.g. http://127.0.0.1:4566 (required unless --print-cloudformation)"
    )
    parser.add_argument("--stack-name", help="CloudFormation stack name (letters, digits, '-'; max 48)")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE), help="SAM template (default: repo template.yaml)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter override (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for CREATE_COMPLETE")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="if the stack already exists and is complete, describe it instead of failing",
    )
    parser.add_argument("--no-cache", action="store_true", help="translate again even if a cached translation exists")
    parser.add_argument(
        "--print-cloudformation",
        action="store_true",
        help="print the full SAM->CloudFormation translation (nothing dropped) and exit; needs no emulator (lint.sh)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    if not args.print_cloudformation:
        if not args.endpoint or not args.stack_name:
            parser.error("--endpoint and --stack-name are required")
        if not STACK_NAME_RE.match(args.stack_name):
            parser.error(
                "--stack-name must start with a letter, hold only letters, digits and '-', at most 48 characters"
            )
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--param expects KEY=VALUE, got {item!r}")
        params[key] = value
    args.params = params
    return args


# ----------------------------------------------------------------------------- translation


def cache_dir() -> Path:
    configured = os.environ.get("LEADFLOW_CACHE_DIR")
    return Path(configured) if configured else DEFAULT_CACHE_DIR


def cache_key(template_bytes: bytes, params: dict[str, str], region: str) -> str:
    digest = hashlib.sha256()
    digest.update(CACHE_FORMAT.encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(template_bytes)
    digest.update(json.dumps({"params": params, "region": region}, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def load_cached(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as handle:
            cached = json.load(handle)
    except (OSError, ValueError):
        return None
    if cached.get("format") != CACHE_FORMAT:
        return None
    return cached


def store_cached(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Tests provision in parallel: write a private file, then rename it into place atomically.
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_sam_template(path: Path) -> dict[str, Any]:
    """Parse YAML with cfn-lint's decoder, which understands the short intrinsic forms (!Ref, !GetAtt, !Sub)."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if matches or template is None:
        details = "; ".join(str(match) for match in matches) if matches else "empty template"
        raise ProvisionError(f"cannot parse {path}: {details}")
    # Plain dicts and strs from here on (the decoder returns node subclasses carrying line marks).
    return json.loads(json.dumps(template))


def sam_function_facts(sam: dict[str, Any]) -> dict[str, Any]:
    """What the emulator cannot tell: the cargo binary and the HTTP routes of each function."""
    facts: dict[str, Any] = {}
    for logical_id, resource in sam.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        routes = []
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            routes.append({"method": str(props.get("Method", "ANY")).upper(), "path": props.get("Path", "$default")})
        facts[logical_id] = {"binary": binary, "http_routes": routes}
    return facts


def parameter_values(sam: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """Each template parameter's value as provisioned: its --param override, else its Default."""
    values = {name: spec.get("Default") for name, spec in (sam.get("Parameters") or {}).items()}
    values.update(params)
    return {name: value for name, value in values.items() if value is not None}


def http_api_throttle(sam: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The HTTP API's throttles (DefaultRouteSettings, RouteSettings by route key such as
    "POST /events"), parameters resolved: the local runner enforces them as API Gateway does.

    A route setting that names only one limit takes the other from the default ones; a limit set
    nowhere is the account's quota, which is all API Gateway applies then."""
    apis = [r for r in sam.get("Resources", {}).values() if r.get("Type") == "AWS::Serverless::HttpApi"]
    if len(apis) > 1:
        raise ProvisionError("the local stack serves one HTTP API; template.yaml declares several")
    props = {
        **((sam.get("Globals") or {}).get("HttpApi") or {}),
        **((apis[0].get("Properties") or {}) if apis else {}),
    }
    values = parameter_values(sam, params)

    def limits(settings: Any, where: str) -> dict[str, Any]:
        settings = replace_refs(settings or {}, values)
        out: dict[str, Any] = {}
        for key, name, kind in (
            ("ThrottlingRateLimit", "rate_limit", float),
            ("ThrottlingBurstLimit", "burst_limit", int),
        ):
            if key not in settings:
                continue
            try:
                out[name] = kind(settings[key])
            except (TypeError, ValueError):
                raise ProvisionError(f"HttpApi {where} {key} is not a number as provisioned: {settings[key]!r}") from None
        return out

    default = {**ACCOUNT_THROTTLE, **limits(props.get("DefaultRouteSettings"), "DefaultRouteSettings")}
    routes = {
        route_key: {**default, **limits(settings, f"RouteSettings {route_key!r}")}
        for route_key, settings in (props.get("RouteSettings") or {}).items()
    }
    return {"default": default, "routes": routes}


def translate(sam: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        """Managed policies named by ARN need no lookup; names would need IAM, which we do not have."""

        def load(self) -> dict[str, str]:
            return {}

    for resource in sam.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"
    return transform(sam, dict(params), NoManagedPolicies())


def references(node: Any) -> set[str]:
    """Logical ids named by Ref, Fn::GetAtt and Fn::Sub anywhere inside node."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) and value else value
                if isinstance(target, str):
                    found.add(target.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) and value else value
                if isinstance(text, str):
                    found.update(m.split(".", 1)[0] for m in re.findall(r"\$\{([^!][^}]*)\}", text))
                if isinstance(value, list) and len(value) > 1:
                    found.update(references(value[1]))
            else:
                found.update(references(value))
    elif isinstance(node, list):
        for item in node:
            found.update(references(item))
    return found


def prune_unsupported(cfn: dict[str, Any]) -> dict[str, str]:
    """Drop unsupported resource types, then whatever refers to a dropped resource. Returns {logical id: type}."""
    resources = cfn["Resources"]
    dropped = {
        logical_id: resource["Type"]
        for logical_id, resource in resources.items()
        if resource.get("Type", "").startswith(UNSUPPORTED_TYPE_PREFIXES)
    }
    while True:
        # A function whose environment merely names a dropped resource (the HTTP API's URL for
        # links) keeps running locally with that variable empty; the local runner sets it.
        for resource in resources.values():
            variables = (((resource.get("Properties") or {}).get("Environment") or {}).get("Variables")) or {}
            for name, value in list(variables.items()):
                if references(value) & dropped.keys():
                    variables[name] = ""
        more = {
            logical_id: resource["Type"]
            for logical_id, resource in resources.items()
            if logical_id not in dropped and references(resource.get("Properties", {})) & dropped.keys()
        }
        if not more:
            break
        dropped.update(more)
    for logical_id in dropped:
        del resources[logical_id]
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in dropped:
            del resource["DependsOn"]
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in dropped]
    outputs = cfn.get("Outputs", {})
    for name in [name for name, output in outputs.items() if references(output) & dropped.keys()]:
        del outputs[name]
    return dropped


def add_resolution_outputs(cfn: dict[str, Any]) -> None:
    outputs = cfn.setdefault("Outputs", {})
    for logical_id, resource in cfn["Resources"].items():
        attribute = RESOLUTION_OUTPUTS.get(resource["Type"])
        if attribute:
            outputs[f"{RESOLUTION_PREFIX}{attribute}{logical_id}"] = {"Value": {"Fn::GetAtt": [logical_id, attribute]}}


def prepared_template(template_path: Path, params: dict[str, str], region: str, use_cache: bool) -> dict[str, Any]:
    template_bytes = template_path.read_bytes()
    path = cache_dir() / "provision" / f"{cache_key(template_bytes, params, region)}.json"
    if use_cache:
        cached = load_cached(path)
        if cached is not None:
            log.info("using cached translation %s", path.name)
            return cached

    started = time.monotonic()
    sam = load_sam_template(template_path)
    unknown = sorted(set(params) - set(sam.get("Parameters", {})))
    if unknown:
        raise ProvisionError(f"unknown template parameter(s): {', '.join(unknown)}")
    facts = sam_function_facts(sam)
    throttle = http_api_throttle(sam, params)
    cfn = translate(sam, params)
    dropped = prune_unsupported(cfn)
    add_resolution_outputs(cfn)
    prepared = {
        "format": CACHE_FORMAT,
        "template": cfn,
        "functions": facts,
        "http_throttle": throttle,
        "dropped": dropped,
        "parameters": sorted(cfn.get("Parameters", {})),
    }
    store_cached(path, prepared)
    if dropped:
        log.info("left out (the emulator cannot create them): %s", ", ".join(sorted(dropped)))
    log.info("translated %s in %.2fs (cached as %s)", template_path.name, time.monotonic() - started, path.name)
    return prepared


# ----------------------------------------------------------------------------- emulator


class Emulator:
    """botocore clients for the emulator, made on first use (each costs tens of milliseconds)."""

    def __init__(self, endpoint: str, region: str):
        import botocore.session
        from botocore.config import Config

        self._session = botocore.session.get_session()
        self._endpoint = endpoint
        self._region = region
        self._config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.create_client(
                service, region_name=self._region, endpoint_url=self._endpoint, config=self._config
            )
        return self._clients[service]


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def ensure_code_bundle(aws: Emulator) -> None:
    """The functions' Code points at s3://CODE_BUCKET/CODE_KEY; the emulator only needs it to exist."""
    try:
        aws.client("s3").head_object(Bucket=CODE_BUCKET, Key=CODE_KEY)
        return
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise
    try:
        aws.client("s3").create_bucket(Bucket=CODE_BUCKET)
    except Exception as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, "#!/bin/sh\necho 'leadflow: handlers run in-process locally' >&2\nexit 1\n")
    aws.client("s3").put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=buffer.getvalue())


def stack_events_text(aws: Emulator, stack_name: str) -> str:
    try:
        events = aws.client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"]
    except Exception as exc:
        return f"(could not read stack events: {exc})"
    lines = [
        f"  {e.get('LogicalResourceId')} {e.get('ResourceType')} {e.get('ResourceStatus')}"
        f" {e.get('ResourceStatusReason') or ''}".rstrip()
        for e in reversed(events)
    ]
    return "\n".join(lines) or "  (no events)"


def replace_refs(node: Any, values: dict[str, str]) -> Any:
    """node with every {"Ref": id} of an id in values replaced by its value."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        return {key: replace_refs(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [replace_refs(item, values) for item in node]
    return node


def emulate_secrets(aws: Emulator, stack_name: str, template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Creates the template's secrets on the emulator (or finds those of a reused stack). Returns
    the template without them, references replaced by ARNs, and {logical id: ARN}."""
    resources = template["Resources"]
    ids = [lid for lid, resource in resources.items() if resource.get("Type") == EMULATED_SECRET_TYPE]
    if not ids:
        return template, {}
    sm = aws.client("secretsmanager")
    arns: dict[str, str] = {}
    for lid in ids:
        generate = (resources[lid].get("Properties") or {}).get("GenerateSecretString") or {}
        length = int(generate.get("PasswordLength", 32))
        name = f"{stack_name}-{lid}"
        try:
            # Letters and digits only, as ExcludePunctuation asks.
            value = "".join(pysecrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(length))
            arns[lid] = sm.create_secret(Name=name, SecretString=value)["ARN"]
        except Exception as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            arns[lid] = sm.describe_secret(SecretId=name)["ARN"]
    template = copy.deepcopy(template)
    for lid in ids:
        del template["Resources"][lid]
    return replace_refs(template, arns), arns


def create_stack(
    aws: Emulator, args: argparse.Namespace, prepared: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    template, secret_arns = emulate_secrets(aws, args.stack_name, prepared["template"])
    cfn = aws.client("cloudformation")
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(args.params.items())]
    try:
        cfn.create_stack(
            StackName=args.stack_name,
            TemplateBody=json.dumps(template),
            Parameters=parameters,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except Exception as exc:
        if error_code(exc) == "AlreadyExistsException" and args.reuse:
            log.info("stack %s exists, reusing it", args.stack_name)
        else:
            events = stack_events_text(aws, args.stack_name)
            raise ProvisionError(f"create_stack {args.stack_name} failed: {exc}\nstack events:\n{events}") from exc

    deadline = time.monotonic() + args.timeout
    delay = 0.02
    while True:
        stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE" or (args.reuse and status in ("UPDATE_COMPLETE",)):
            return stack, secret_arns
        if not status.endswith("_IN_PROGRESS"):
            raise ProvisionError(
                f"stack {args.stack_name} ended in {status}: {stack.get('StackStatusReason') or ''}\n"
                f"stack events:\n{stack_events_text(aws, args.stack_name)}"
            )
        if time.monotonic() > deadline:
            raise ProvisionError(
                f"stack {args.stack_name} still {status} after {args.timeout}s\n"
                f"stack events:\n{stack_events_text(aws, args.stack_name)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def describe(
    aws: Emulator, args: argparse.Namespace, prepared: dict[str, Any], stack: dict[str, Any]
) -> dict[str, Any]:
    template = prepared["template"]["Resources"]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    lambda_ = aws.client("lambda")
    events = aws.client("events")
    sqs = aws.client("sqs")

    def of_type(resource_type: str) -> list[str]:
        return [lid for lid, res in template.items() if res["Type"] == resource_type]

    summaries = []
    for page in aws.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=args.stack_name):
        summaries.extend(page["StackResourceSummaries"])
    physical = {s["LogicalResourceId"]: s.get("PhysicalResourceId") or "" for s in summaries}
    for logical_id, resource in template.items():
        attribute = RESOLUTION_OUTPUTS.get(resource["Type"])
        if not physical.get(logical_id) and attribute == "Name":
            physical[logical_id] = outputs.get(f"{RESOLUTION_PREFIX}{attribute}{logical_id}", "")
    missing = sorted(lid for lid in template if not physical.get(lid))
    if missing:
        log.debug("the emulator gives no physical id for %s; left out of the manifest", ", ".join(missing))
    physical = {lid: pid for lid, pid in physical.items() if pid}

    queue_ids = of_type("AWS::SQS::Queue")
    function_ids = of_type("AWS::Lambda::Function")
    mapping_ids = of_type("AWS::Lambda::EventSourceMapping")
    schedule_ids = [
        lid for lid in of_type("AWS::Events::Rule") if "ScheduleExpression" in template[lid].get("Properties", {})
    ]

    # One request at a time: each takes a few milliseconds, whereas moto answered concurrent first
    # requests on a fresh server far slower (about 1 s each).

    # Queues: URLs as the emulator serves them; ARNs as the emulator resolved them.
    listed_queues = sqs.list_queues(QueueNamePrefix=f"{args.stack_name}-").get("QueueUrls", []) if queue_ids else []
    by_name = {url.rsplit("/", 1)[-1]: url for url in listed_queues}
    queue_urls: dict[str, str] = {}
    queue_arns: dict[str, str] = {}
    for lid in queue_ids:
        name = physical[lid].rsplit("/", 1)[-1]
        url = by_name.get(name) or sqs.get_queue_url(QueueName=name)["QueueUrl"]
        queue_urls[lid] = physical[lid] = url
        arn = outputs.get(f"{RESOLUTION_PREFIX}Arn{lid}")
        if not arn:
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_arns[lid] = arn
    queue_by_arn = {arn: lid for lid, arn in queue_arns.items()}

    # Functions, keyed by the SAM logical id (the translated AWS::Lambda::Function keeps it).
    functions: dict[str, Any] = {}
    arn_to_function: dict[str, str] = {}
    for lid in function_ids:
        config = lambda_.get_function_configuration(FunctionName=physical[lid])
        arn_to_function[config["FunctionArn"]] = lid
        facts = prepared["functions"].get(lid, {})
        functions[lid] = {
            "function_name": config["FunctionName"],
            "binary": facts.get("binary"),
            "environment": (config.get("Environment") or {}).get("Variables", {}),
            "timeout_seconds": config.get("Timeout"),
            "http_routes": facts.get("http_routes", []),
            "queues": [],
            "schedules": [],
        }

    # Queue event sources, as the emulator holds them.
    for lid in mapping_ids:
        mapping = lambda_.get_event_source_mapping(UUID=physical[lid])
        owner = arn_to_function.get(mapping["FunctionArn"])
        source = mapping.get("EventSourceArn", "")
        if owner is None or source not in queue_by_arn:
            log.warning("event source mapping %s (%s) is not a queue of this stack's functions", lid, source)
            continue
        queue_lid = queue_by_arn[source]
        functions[owner]["queues"].append(
            {
                "queue_logical_id": queue_lid,
                "queue_url": queue_urls[queue_lid],
                "queue_arn": source,
                "batch_size": mapping.get("BatchSize", 10),
                "report_batch_item_failures": "ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or []),
                "maximum_batching_window_seconds": mapping.get("MaximumBatchingWindowInSeconds", 0),
                "maximum_concurrency": (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                "enabled": mapping.get("State", "Enabled") == "Enabled",
            }
        )
        # The local runner's pollers are the event source mapping. moto's own would receive from
        # the queue on every send, fail to invoke (no Docker), and count each try as a receive,
        # sending messages to the DLQ early. Its state was recorded above; now it stands still.
        lambda_.update_event_source_mapping(UUID=physical[lid], Enabled=False)

    # Schedules: rules with a schedule expression whose targets are this stack's functions.
    for lid in schedule_ids:
        rule = events.describe_rule(Name=physical[lid])
        for target in events.list_targets_by_rule(Rule=physical[lid]).get("Targets", []):
            owner = arn_to_function.get(target["Arn"])
            if owner is not None:
                functions[owner]["schedules"].append(
                    {
                        "rule_logical_id": lid,
                        "rule_name": physical[lid],
                        "expression": rule.get("ScheduleExpression", ""),
                        "enabled": rule.get("State", "ENABLED") == "ENABLED",
                    }
                )

    return {
        "endpoint": args.endpoint,
        "region": args.region,
        "stack_name": args.stack_name,
        "resources": dict(sorted(physical.items())),
        "queue_arns": dict(sorted(queue_arns.items())),
        "outputs": {k: v for k, v in sorted(outputs.items()) if not k.startswith(RESOLUTION_PREFIX)},
        "skipped_resources": prepared["dropped"],
        "functions": dict(sorted(functions.items())),
        "http_throttle": prepared.get("http_throttle", {}),
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="provision: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "samtranslator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    # samtranslator and boto3 read the region from the environment; the emulator takes any keys.
    os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    os.environ.setdefault("AWS_REGION", args.region)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.pop("AWS_PROFILE", None)

    started = time.monotonic()
    try:
        template_path = Path(args.template).resolve()
        if not template_path.is_file():
            raise ProvisionError(f"template not found: {template_path}")
        if args.print_cloudformation:
            sam = load_sam_template(template_path)
            json.dump(translate(sam, args.params), sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        prepared = prepared_template(template_path, args.params, args.region, use_cache=not args.no_cache)

        aws = Emulator(args.endpoint, args.region)
        ensure_code_bundle(aws)
        stack, secret_arns = create_stack(aws, args, prepared)
        log.info("stack %s is %s after %.2fs", args.stack_name, stack["StackStatus"], time.monotonic() - started)
        manifest = describe(aws, args, prepared, stack)
        manifest["resources"] = dict(sorted({**manifest["resources"], **secret_arns}.items()))
    except ProvisionError as exc:
        log.error("%s", exc)
        return 1
    except Exception as exc:
        log.error("failed: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
        return 1

    json.dump(manifest, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()
    log.info("done in %.2fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
