#!/usr/bin/env python3
"""A local SMTP sink for tests: accepts every message and saves it as JSON in a directory.

Usage: smtp_sink.py --dir DIR [--port 0] [--auth USER:PASSWORD] [--tls-cert CERT --tls-key KEY]
                    [--reject ADDRESS=CODE[:TIMES]]...

Prints "PORT <n>" on stdout once listening (port 0 picks a free one). Each message is saved as
DIR/<n>.json with mail_from, rcpt_tos, authenticated login, the raw data, and the decoded
subject, headers and leaf parts (content type + decoded body). With --auth, AUTH
(PLAIN/LOGIN) is required and checked; it is allowed without TLS unless --tls-cert is given, in
which case STARTTLS is offered and required before AUTH and MAIL (with --implicit-tls the
connection is TLS from the first byte instead, like port 465). Each --reject answers
RCPT TO:<ADDRESS> with CODE (e.g. 550 or 451) the first TIMES times (always when omitted), to
test permanent and transient failures. Records carry received_at (Unix time, float seconds).
"""
import argparse
import asyncio
import email
import email.policy
import itertools
import json
import logging
import os
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Saver:
    def __init__(self, directory, rejects=None):
        self.directory = directory
        self.counter = itertools.count(1)
        # address -> [code, remaining times or None for always]
        self.rejects = rejects or {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self.rejects.get(address.lower())
        if rule is not None and (rule[1] is None or rule[1] > 0):
            if rule[1] is not None:
                rule[1] -= 1
            code = rule[0]
            text = "mailbox unavailable" if code.startswith("5") else "try again later"
            return f"{code} {code[0]}.1.1 {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        record = {
            "received_at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            # STARTTLS sets session.ssl; with --implicit-tls the transport itself is TLS.
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "data": envelope.content.decode("utf-8", errors="replace"),
        }
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record["subject"] = str(parsed["subject"])
        record["headers"] = [[k, str(v)] for k, v in parsed.items()]
        record["parts"] = [
            {"content_type": part.get_content_type(), "body": part.get_content()}
            for part in parsed.walk()
            if not part.is_multipart()
        ]
        tmp = os.path.join(self.directory, f".{n}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.directory, f"{n}.json"))
        return "250 OK queued as sink-%d" % n


def authenticator(expected):
    user, password = expected.split(":", 1)

    def check(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password:
            return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)

    return check


async def main():
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (port 465 style) with --tls-cert/--tls-key")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    rejects = {}
    for rule in args.reject:
        address, spec = rule.rsplit("=", 1)
        code, _, times = spec.partition(":")
        rejects[address.lower()] = [code, int(times) if times else None]
    handler = Saver(args.dir, rejects)
    kwargs = {}
    if args.auth:
        kwargs.update(authenticator=authenticator(args.auth), auth_required=True, auth_require_tls=bool(args.tls_cert) and not args.implicit_tls)
    server_ssl = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.implicit_tls:
            server_ssl = context
        else:
            kwargs.update(tls_context=context, require_starttls=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.local", **kwargs), "127.0.0.1", args.port, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    # Exit when the parent closes our stdin (the test process ended).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
