"""``hygeia cds client add|list``: the EHRs whose signed calls the CDS services accept.

The parser is built on every ``hygeia`` invocation; the JWT machinery
(:mod:`hygeia.clinical.cds.auth`) is imported only when a client command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hygeia.fhir.datetime import now_us
from hygeia.store import DEFAULT_URL, AuthStore, DuplicateEntry, open_repository

MAX_JWKS_BYTES = 256 * 1024


class UsageError(Exception):
    """A mistake in the command's arguments or files (one ``error:`` line)."""


def _jwks(args: argparse.Namespace) -> dict[str, Any]:
    if args.jwks_url:
        if not args.jwks_url.startswith("https://") and \
                not args.jwks_url.startswith("http://127.0.0.1"):
            raise UsageError("--jwks-url must be an https:// URL")
        return {"jwks_uri": args.jwks_url}
    path = Path(args.jwks_file)
    if path.stat().st_size > MAX_JWKS_BYTES:
        raise UsageError(f"{path} is over {MAX_JWKS_BYTES // 1024} KB: not a JWK Set")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not JSON: {error}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise UsageError(f"{path} is not a JWK Set (an object with a list of 'keys')")
    if any("d" in key for key in keys):
        raise UsageError(f"{path} holds a private key: register the public keys only")
    return {"keys": keys}


def add(args: argparse.Namespace) -> int:
    from hygeia.clinical.cds.auth import registered_client

    jwks = _jwks(args)
    with open_repository(args.db) as repository:
        try:
            AuthStore(repository).add_client(registered_client(args.issuer, jwks, now_us()))
        except DuplicateEntry:
            raise UsageError(f"the issuer {args.issuer} is registered already") from None
    print(f"registered CDS client {args.issuer}")
    return 0


def list_clients(args: argparse.Namespace) -> int:
    from hygeia.clinical.cds.auth import CLIENT_PREFIX

    with open_repository(args.db) as repository:
        for client in AuthStore(repository).clients():
            if client.client_id.startswith(CLIENT_PREFIX):
                where = client.jwks_url or f"{len((client.jwks or {}).get('keys', []))} keys"
                print(f"{client.client_id.removeprefix(CLIENT_PREFIX)}\t{where}\t"
                      f"{'active' if client.active else 'inactive'}")
    return 0


class CdsCommand:
    """``hygeia cds client add|list``."""

    name = "cds"
    help = "CDS Hooks: register the EHRs allowed to call the services"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        groups = parser.add_subparsers(dest="cds_group", metavar="GROUP", required=True)
        clients = groups.add_parser("client", help="the EHRs (JWT issuers) allowed to call")
        actions = clients.add_subparsers(dest="cds_action", metavar="ACTION", required=True)
        adding = actions.add_parser("add", help="register an issuer and its public keys")
        adding.add_argument("--issuer", required=True, help="the JWT's iss, e.g. the EHR's URL")
        keys = adding.add_mutually_exclusive_group(required=True)
        keys.add_argument("--jwks-file", metavar="F",
                          help="a file holding its JWK Set (one of --jwks-file and --jwks-url "
                               "is required; no default)")
        keys.add_argument("--jwks-url", metavar="U",
                          help="the https:// URL where it publishes its JWK Set (no default)")
        adding.set_defaults(cds_run=add)
        listing = actions.add_parser("list", help="list the registered issuers")
        listing.set_defaults(cds_run=list_clients)
        for action in (adding, listing):
            action.add_argument("--db", default=DEFAULT_URL,
                                help=f"database URL (default {DEFAULT_URL})")

    def run(self, args: argparse.Namespace) -> int:
        try:
            return int(args.cds_run(args))
        except (UsageError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

