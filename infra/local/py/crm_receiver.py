#!/usr/bin/env python3
"""A CRM for local development: receives leadflow's deliveries (routed leads, partner offers and
SLA notices), checks their Standard Webhooks signature, prints them, and can answer the CRM's
side (accepted, ...) back to leadflow.

    python3 infra/local/py/crm_receiver.py [--port 9000] [--fail 3]
        [--secret whsec_...] [--accept --api http://127.0.0.1:3000]

--fail N answers the first N deliveries with 500 (to watch the retries); --accept posts a signed
`accepted` callback for every delivered lead (not for offers or notices). Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCAL_SECRET = "whsec_bGVhZGZsb3ctbG9jYWwtZGV2LXNlY3JldC0zMi1ieXRlcw=="


def signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verified(secret: str, headers, body: bytes) -> bool:
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
        return False
    expected = signature(secret, msg_id, ts, body).split(",", 1)[1]
    return any(
        hmac.compare_digest(expected, s.split(",", 1)[1])
        for s in headers.get("webhook-signature", "").split()
        if s.startswith("v1,")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--secret", default=LOCAL_SECRET)
    p.add_argument("--fail", type=int, default=0)
    p.add_argument("--accept", action="store_true")
    p.add_argument("--api", default="http://127.0.0.1:3000")
    args = p.parse_args()
    failures = {"left": args.fail}
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            msg_id = self.headers.get("webhook-id", "")
            if not verified(args.secret, self.headers, body):
                print(f"REJECTED {msg_id}: bad or stale signature")
                self.send_response(401)
                self.end_headers()
                return
            if failures["left"] > 0:
                failures["left"] -= 1
                print(f"failing {msg_id} on purpose ({failures['left']} more)")
                self.send_response(500)
                self.end_headers()
                return
            self.send_response(204)
            self.end_headers()
            if msg_id in seen:
                print(f"duplicate {msg_id}: ignored")
                return
            seen.add(msg_id)
            payload = json.loads(body)
            kind, data = payload["type"], payload["data"]
            if kind not in ("lead.routed", "lead.offered"):
                # An SLA notice: its text line says what happened.
                print(f"{kind}: {payload.get('text')}  [{msg_id}, signature ok]")
                return
            owner = data["assignment"]["assigned_to"]
            score = data.get("score") or {}
            contact = (data.get("contact") or {}).get("email", "contact withheld until accepted")
            print(f"{kind} {data['lead_id']} ({contact}) for {owner.get('name')}: "
                  f"score {score.get('score')} grade {score.get('grade')} {score.get('temperature')}, "
                  f"SLA {data['assignment']['sla_deadline']}  [{msg_id}, signature ok]")
            if args.accept and kind == "lead.routed":
                threading.Thread(target=accept, args=(data["lead_id"],)).start()

        def log_message(self, *_: object) -> None:
            pass

    def accept(lead_id: str) -> None:
        body = json.dumps({"status": "accepted", "lead_id": lead_id, "by": "crm_receiver"}).encode()
        msg_id, ts = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
        req = urllib.request.Request(f"{args.api}/crm/events", data=body, method="POST", headers={
            "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts,
            "webhook-signature": signature(args.secret, msg_id, ts, body)})
        try:
            with urllib.request.urlopen(req) as r:
                print(f"  accepted: {r.read().decode()}")
        except urllib.error.HTTPError as e:
            print(f"  callback answered {e.code}: {e.read().decode()}")
        except OSError as e:
            print(f"  callback failed: {e}")

    print(f"CRM receiver on http://127.0.0.1:{args.port}/hooks/leadflow")
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
