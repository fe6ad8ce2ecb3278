"""``hygeia auth ...``: register clients and users, rotate keys, start EHR launches.

Every command prints one JSON object on stdout (scripts read it) and never
prints a secret except the one it has just created, once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hygeia.cli.runtime import beside_database
from hygeia.fhir.datetime import format_instant, now_us
from hygeia.store.factory import DEFAULT_URL

EPILOG = """examples:
  hygeia auth client create --db sqlite:///./hygeia.db --name "Chart app" \\
      --scopes "launch/patient openid fhirUser patient/*.rs offline_access" \\
      --redirect-uri https://app.example.org/callback
  hygeia auth client create --name "Nightly export" --scopes "system/*.rs" --jwks-file keys.json
  hygeia auth client create --name "Payer export" --scopes "system/*.read" \
      --jwks-url https://payer.example.org/.well-known/jwks.json
  echo 's3cret-pass' | hygeia auth user create --username dr.lee --password-stdin \\
      --practitioner 7
  hygeia auth launch create --patient 42
  hygeia auth key rotate"""


def add_auth_commands(commands: Any) -> None:
    auth = commands.add_parser("auth", help="manage SMART clients, users and keys",
                               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = auth.add_subparsers(dest="auth_group", required=True)
    client = groups.add_parser("client", help="register and rotate client apps")
    client_actions = client.add_subparsers(dest="auth_action", required=True)
    create = client_actions.add_parser("create", help="register a client app")
    _db(create)
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True,
                        help="the most this client may be granted, e.g. 'system/*.rs'")
    _credentials(create)
    create.add_argument("--redirect-uri", action="append", default=[],
                        help="a redirect URI of the app (repeatable)")
    create.add_argument("--client-id", help="choose the id (default: a new random one)")
    rotate = client_actions.add_parser("rotate", help="replace a client's secret or keys")
    _db(rotate)
    rotate.add_argument("--client-id", required=True)
    _credentials(rotate)

    user = groups.add_parser("user", help="create users who sign in")
    user_actions = user.add_subparsers(dest="auth_action", required=True)
    user_create = user_actions.add_parser("create", help="create a user")
    _db(user_create)
    user_create.add_argument("--username", required=True)
    user_create.add_argument("--password-stdin", action="store_true", required=True,
                             help="read the password from stdin (never from the command line)")
    linked = user_create.add_mutually_exclusive_group()
    linked.add_argument("--patient", help="the user is this Patient (id)")
    linked.add_argument("--practitioner", help="the user is this Practitioner (id)")

    key = groups.add_parser("key", help="the server's token signing keys")
    key_actions = key.add_subparsers(dest="auth_action", required=True)
    key_rotate = key_actions.add_parser("rotate", help="make a new signing key; the old one "
                                        "keeps verifying until its tokens expire")
    _db(key_rotate)
    key_rotate.add_argument("--secret-key-file", help="default: beside the database")

    launch = groups.add_parser("launch", help="EHR launch contexts")
    launch_actions = launch.add_subparsers(dest="auth_action", required=True)
    launch_create = launch_actions.add_parser("create", help="a launch id for an EHR launch")
    _db(launch_create)
    launch_create.add_argument("--patient", required=True)
    launch_create.add_argument("--encounter")


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")


def _credentials(parser: argparse.ArgumentParser) -> None:
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--jwks-file", help="the client's public keys (a JWK Set, JSON)")
    kind.add_argument("--jwks-url", help="where the client publishes its public keys (a JWK "
                      "Set); fetched by the server when needed, and cached")
    kind.add_argument("--secret", action="store_true",
                      help="give the client a shared secret (printed once)")


def run_auth(args: argparse.Namespace) -> int:
    from hygeia.store import open_repository
    from hygeia.store.auth import DuplicateEntry

    with open_repository(args.db) as repository:
        action = _ACTIONS[(args.auth_group, args.auth_action)]
        try:
            result = action(repository, args)
        except DuplicateEntry as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except SystemExit as refusal:  # the commands' own refusals: one error line
            if not isinstance(refusal.code, str):
                raise
            print(f"error: {refusal.code}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2))
    return 0


def _client_create(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.server.auth.scopes import ScopeError, Scopes
    from hygeia.store.auth import AuthStore, Client

    try:
        scopes = Scopes.parse_request(args.scopes)
    except ScopeError as error:
        raise SystemExit(f"--scopes: {error}") from None
    if scopes.empty:
        raise SystemExit(f"--scopes '{args.scopes}' holds no SMART scope.")
    secret, secret_hash, jwks = _new_credentials(args)
    client = Client(args.client_id or uuid.uuid4().hex, args.name, secret_hash, jwks,
                    tuple(args.redirect_uri), scopes.text, now_us(), True)
    AuthStore(repository).add_client(client)
    result = {"client_id": client.client_id, "name": client.name, "scopes": client.scopes,
              "redirect_uris": list(client.redirect_uris),
              "kind": "public" if client.public else "confidential"}
    if secret:
        result["client_secret"] = secret
    return result


def _client_rotate(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.store.auth import AuthStore

    if not args.secret and not args.jwks_file and not args.jwks_url:
        raise SystemExit("Give --secret, --jwks-file or --jwks-url.")
    secret, secret_hash, jwks = _new_credentials(args)
    store = AuthStore(repository)
    if not store.update_client_credentials(args.client_id, secret_hash=secret_hash, jwks=jwks):
        raise SystemExit(f"There is no client '{args.client_id}'.")
    _revoke_earlier_tokens(store, args.client_id)
    result: dict[str, Any] = {"client_id": args.client_id, "tokens_revoked_before":
                              format_instant(now_us())}
    if secret:
        result["client_secret"] = secret
    return result


def _revoke_earlier_tokens(store: Any, client_id: str) -> None:
    """Access tokens the client got before the rotation stop working (the old credential
    may have leaked).  Tokens state their issue time in whole seconds, so the cut is the
    next whole second, and the command returns only after it: any token issued with the
    new credential after the command returned is valid."""
    second = 1_000_000
    cut = (now_us() // second + 1) * second
    store.revoke_client_tokens(client_id, cut)
    time.sleep(max(0.0, (cut - now_us()) / second))


def _new_credentials(args: argparse.Namespace
                     ) -> tuple[str | None, str | None, dict[str, Any] | None]:
    from hygeia.server.auth.secrets import digest, new_handle

    if args.jwks_url:
        parts = urlsplit(args.jwks_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(f"--jwks-url {args.jwks_url} is not an http or https URL.")
        return None, None, {"jwks_uri": args.jwks_url}
    if args.jwks_file:
        jwks = json.loads(Path(args.jwks_file).read_text())
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise SystemExit(f"{args.jwks_file} is not a JWK Set (an object with 'keys').")
        if any("d" in key for key in jwks["keys"] if isinstance(key, dict)):
            raise SystemExit(f"{args.jwks_file} holds a private key; register public keys only.")
        return None, None, jwks
    if args.secret:
        secret = new_handle()
        return secret, digest(secret), None
    return None, None, None


def _user_create(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.server.auth.secrets import hash_password
    from hygeia.store.auth import AuthStore, User

    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise SystemExit("The password must have at least 8 characters.")
    fhir_user = (f"Patient/{args.patient}" if args.patient else
                 f"Practitioner/{args.practitioner}" if args.practitioner else None)
    AuthStore(repository).add_user(User(args.username, hash_password(password), fhir_user,
                                        now_us(), True))
    return {"username": args.username, "fhirUser": fhir_user}


def _key_rotate(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.server.auth.secrets import SecretBox
    from hygeia.server.auth.signing import Signer
    from hygeia.store.auth import AuthStore

    path = Path(args.secret_key_file or default_secret_key_file(args.db))
    kid = Signer(AuthStore(repository), SecretBox.from_file(path)).rotate()
    return {"kid": kid, "secret_key_file": str(path)}


def _launch_create(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.server.auth.authorize import new_launch
    from hygeia.store.auth import AuthStore

    launch = new_launch(AuthStore(repository), args.patient, args.encounter)
    return {"launch": launch, "patient": args.patient, "encounter": args.encounter}


def default_secret_key_file(db_url: str) -> str:
    """``hygeia.db`` keeps its secret key in ``hygeia-secret.key`` beside it; PostgreSQL in
    the working directory (or set HYGEIA_SECRET_KEY, the same for every server)."""
    return beside_database(db_url, "-secret.key")


_ACTIONS = {("client", "create"): _client_create, ("client", "rotate"): _client_rotate,
            ("user", "create"): _user_create, ("key", "rotate"): _key_rotate,
            ("launch", "create"): _launch_create}
