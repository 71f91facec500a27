#!/usr/bin/env python3
"""A real EWS client (exchangelib, from PyPI) using openum as its only EWS URL.

Run by `crates/openum/tests/exchangelib_e2e.rs`; prints one JSON object on stdout.

    voicemail_client.py play --url URL --user LOGIN --smtp ADDRESS --dial NUMBER --capture FILE
    voicemail_client.py autodiscover --url URL --user LOGIN --smtp ADDRESS --capture FILE

The password is read from the environment (OPENUM_TEST_PASSWORD), never from the command line.

- `play`: exchangelib with an explicit service endpoint (openum's EWS URL, Basic, a fixed
  version, no autodiscover) lists the Voice Mail folder, reads the newest item with its
  attachments (GetItem, GetAttachment — forwarded by openum to the mailbox server), then sends
  PlayOnPhone and polls GetPhoneCallInformation until the call is Disconnected. exchangelib has no
  service classes for the UM operations, so their SOAP envelopes are posted with exchangelib's own
  session (`account.protocol.get_session()`: its connection pool, its credentials).
- `autodiscover`: exchangelib with `autodiscover=True`. exchangelib 5.x speaks SOAP Autodiscover
  (`GetUserSettings` on `/autodiscover/autodiscover.svc`) and starts at
  `https://<domain>/autodiscover/autodiscover.svc`, then `https://autodiscover.<domain>/…`, DNS SRV
  — none of which can reach a test server on 127.0.0.1 over plain HTTP. So the script pre-seeds
  exchangelib's own autodiscover cache (a `shelve` file, pointed at a private temporary file) with
  openum's `/autodiscover/autodiscover.svc` for the address's domain: exchangelib's cache-hit path
  (`Autodiscovery._quick`) then asks openum, which forwards to the mailbox server and rewrites
  the EWS URL in its answer. Nothing else in exchangelib is patched.

Every HTTP request body exchangelib sends is recorded (URL path, exact bytes) by wrapping
`requests.Session.send` — the transport below exchangelib — into the capture file (JSON lines), so
the test can compare them with the bytes the mailbox server received through openum.
"""

import argparse
import base64
import json
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

try:
    import exchangelib
    import requests
    from exchangelib import (
        BASIC,
        NTLM,
        DELEGATE,
        Account,
        Build,
        Configuration,
        Credentials,
        Version,
    )
    from exchangelib.attachments import FileAttachment
    from exchangelib.autodiscover import cache as autodiscover_cache_module
    from exchangelib.autodiscover.protocol import AutodiscoverProtocol
except ImportError as error:  # the Rust test turns exit code 3 into an install hint
    print(f"exchangelib is not installed: {error}", file=sys.stderr)
    sys.exit(3)

M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def record_bodies(capture_path):
    """Wraps requests.Session.send to append every request's path and exact body bytes."""
    original = requests.Session.send

    def send(self, request, **kwargs):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        with open(capture_path, "a", encoding="utf-8") as capture:
            capture.write(
                json.dumps(
                    {
                        "method": request.method,
                        "path": urlsplit(request.url).path,
                        "body": base64.b64encode(body).decode("ascii"),
                    }
                )
                + "\n"
            )
        return original(self, request, **kwargs)

    requests.Session.send = send


def envelope(body):
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:m="{M}" xmlns:t="{T}">'
        '<s:Header><t:RequestedServerVersion Version="Exchange2013"/></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


def post_um(account, body):
    """POSTs a UM operation with exchangelib's own session; the parsed answer."""
    protocol = account.protocol
    session = protocol.get_session()
    try:
        reply = session.post(
            protocol.service_endpoint,
            data=envelope(body),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            allow_redirects=False,
            timeout=30,
        )
    finally:
        protocol.release_session(session)
    if reply.status_code != 200:
        raise SystemExit(f"UM operation: HTTP {reply.status_code}: {reply.text[:500]}")
    return ET.fromstring(reply.content)


def response_code(root):
    code = root.find(f".//{{{M}}}ResponseCode")
    return None if code is None else code.text


def play(args, password):
    credentials = Credentials(args.user, password)
    config = Configuration(
        service_endpoint=args.url,
        credentials=credentials,
        auth_type=NTLM if args.auth == "ntlm" else BASIC,
        version=Version(build=Build(15, 1, 2507, 6)),
    )
    account = Account(
        primary_smtp_address=args.smtp,
        config=config,
        autodiscover=False,
        access_type=DELEGATE,
    )
    folder = account.voice_mail
    listed = list(
        folder.all().order_by("-datetime_received").only("subject", "datetime_received", "item_class")
    )
    if not listed:
        raise SystemExit("the Voice Mail folder is empty")
    # GetItem of the newest voice message with every property exchangelib knows.
    (item,) = list(account.fetch(ids=[listed[0]]))
    attachments = []
    for attachment in item.attachments:
        entry = {"name": attachment.name, "content_type": attachment.content_type}
        if isinstance(attachment, FileAttachment):
            entry["bytes"] = len(attachment.content)  # GetAttachment
        attachments.append(entry)

    answer = post_um(
        account,
        f'<m:PlayOnPhone><m:ItemId Id="{item.id}"/><m:DialString>{args.dial}</m:DialString></m:PlayOnPhone>',
    )
    call = answer.find(f".//{{{M}}}PhoneCallId")
    if call is None:
        raise SystemExit(f"no PhoneCallId: {ET.tostring(answer, encoding='unicode')}")
    call_id = call.get("Id")
    states = []
    deadline = time.monotonic() + 40
    while True:
        info = post_um(
            account,
            f'<m:GetPhoneCallInformation><m:PhoneCallId Id="{call_id}"/></m:GetPhoneCallInformation>',
        )
        state = info.find(f".//{{{T}}}PhoneCallState")
        state = None if state is None else state.text
        if not states or states[-1] != state:
            states.append(state)
        if state == "Disconnected" or time.monotonic() > deadline:
            cause = info.find(f".//{{{T}}}ConnectionFailureCause")
            break
        time.sleep(0.2)
    return {
        "exchangelib": exchangelib.__version__,
        "auth_type": account.protocol.auth_type,
        "service_endpoint": account.protocol.service_endpoint,
        "folder": {"name": folder.name, "total_count": folder.total_count},
        "listed": [{"id": i.id, "subject": i.subject, "item_class": i.item_class} for i in listed],
        "item": {
            "id": item.id,
            "subject": item.subject,
            "item_class": item.item_class,
            "attachments": attachments,
        },
        "play_on_phone": {
            "response_code": response_code(answer),
            "phone_call_id": call_id,
            "states": states,
            "connection_failure_cause": None if cause is None else cause.text,
        },
    }


def autodiscover(args, password):
    # exchangelib's cache lives in a shelve file in the temp dir; use a private one.
    with tempfile.TemporaryDirectory(prefix="openum-exchangelib-") as storage:
        autodiscover_cache_module.AUTODISCOVER_PERSISTENT_STORAGE = os.path.join(storage, "cache")
        return discover_through_cache(args, password)


def discover_through_cache(args, password):
    credentials = Credentials(args.user, password)
    domain = args.smtp.split("@", 1)[1].lower()
    seeded = AutodiscoverProtocol(
        config=Configuration(service_endpoint=args.url, credentials=credentials, auth_type=BASIC)
    )
    autodiscover_cache_module.autodiscover_cache[(domain, credentials)] = seeded
    account = Account(
        primary_smtp_address=args.smtp,
        credentials=credentials,
        autodiscover=True,
        access_type=DELEGATE,
    )
    # The EWS URL it found is used for real: the folder is read through it.
    folder = account.voice_mail
    return {
        "exchangelib": exchangelib.__version__,
        "autodiscover_endpoint": seeded.service_endpoint,
        "service_endpoint": account.protocol.service_endpoint,
        "auth_type": account.protocol.auth_type,
        "version": account.version.api_version,
        "primary_smtp_address": account.primary_smtp_address,
        "folder": {"name": folder.name, "total_count": folder.total_count},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["play", "autodiscover"])
    parser.add_argument("--url", required=True, help="openum's EWS (or autodiscover.svc) URL")
    parser.add_argument("--user", required=True, help="the mailbox login")
    parser.add_argument("--smtp", required=True, help="the mailbox's primary SMTP address")
    parser.add_argument("--dial", default="4711")
    parser.add_argument("--auth", choices=["basic", "ntlm"], default="basic")
    parser.add_argument("--capture", required=True, help="where to record request bodies")
    args = parser.parse_args()
    password = os.environ.get("OPENUM_TEST_PASSWORD")
    if not password:
        raise SystemExit("OPENUM_TEST_PASSWORD is not set")
    record_bodies(args.capture)
    result = play(args, password) if args.mode == "play" else autodiscover(args, password)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
