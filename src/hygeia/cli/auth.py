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
from hygeia.store import DEFAULT_URL

EPILOG = """examples:
  hygeia auth client create --db sqlite:///./hygeia.db --name "Chart app" \\
      --scopes "launch/patient openid fhirUser patient/*.rs offline_access" \\
      --redirect-uri https://app.example.org/callback
  hygeia auth client create --name "Nightly export" --scopes "system/*.rs" --jwks-file keys.json
  hygeia auth client create --name "Payer export" --scopes "system/*.read" \\
      --jwks-url https://payer.example.org/.well-known/jwks.json
  echo 's3cret-pass' | hygeia auth user create --username dr.lee --password-stdin \\
      --practitioner 7
  hygeia auth client list
  hygeia auth client disable --client-id 3f2a...
  hygeia auth user list
  hygeia auth launch create --patient 42
  hygeia auth key rotate"""


def add_auth_commands(commands: Any) -> None:
    auth = commands.add_parser("auth", help="manage SMART clients, users and keys",
                               description="Manage SMART clients, users, signing keys and "
                               "EHR launches.", epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    auth.set_defaults(help_parser=auth)
    groups = auth.add_subparsers(dest="auth_group", metavar="SUBJECT", title="subjects")
    _add_client_commands(_group(groups, "client", "register, list, rotate, disable and "
                                "delete client apps"))
    _add_user_commands(_group(groups, "user", "create, list and disable users who sign in"))
    key = _group(groups, "key", "the server's token signing keys")
    key_rotate = key.add_parser("rotate", help="make a new signing key; the old one "
                                "keeps verifying until its tokens expire")
    _db(key_rotate)
    _secret_key_file(key_rotate)
    key_rotate.add_argument("--replace-lost-secret-key", action="store_true",
                            help="the secret key that sealed the current signing key is lost: "
                                 "seal a new signing key with this one (tokens signed before "
                                 "stay valid until they expire)")
    launch = _group(groups, "launch", "EHR launch contexts")
    launch_create = launch.add_parser("create", help="a launch id for an EHR launch")
    _db(launch_create)
    launch_create.add_argument("--patient", required=True, help="the Patient id in context")
    launch_create.add_argument("--encounter", help="the Encounter id in context (default: none)")


def _group(groups: Any, name: str, summary: str) -> Any:
    """``hygeia auth NAME``: its actions; without one, its help lists them."""
    parser = groups.add_parser(name, help=summary, description=summary[0].upper() + summary[1:]
                               + ".")
    parser.set_defaults(help_parser=parser)
    return parser.add_subparsers(dest="auth_action", metavar="ACTION", title="actions")


def _add_client_commands(client_actions: Any) -> None:
    create = client_actions.add_parser("create", help="register a client app")
    _db(create)
    create.add_argument("--name", required=True, help="the app's name, shown on sign-in pages")
    create.add_argument("--scopes", required=True,
                        help="the most this client may be granted, e.g. 'system/*.rs'")
    _credentials(create)
    create.add_argument("--redirect-uri", action="append", default=[],
                        help="a redirect URI of the app (repeatable; default: none, for "
                             "backend services)")
    create.add_argument("--client-id", help="choose the id (default: a new random one)")
    rotate = client_actions.add_parser("rotate", help="replace a client's secret or keys")
    _db(rotate)
    _client_id(rotate)
    _credentials(rotate)
    listing = client_actions.add_parser("list", help="every client, without secrets")
    _db(listing)
    disable = client_actions.add_parser("disable", help="refuse the client new tokens and "
                                        "revoke those it holds")
    _db(disable)
    _client_id(disable)
    enable = client_actions.add_parser("enable", help="let a disabled client get tokens again")
    _db(enable)
    _client_id(enable)
    delete = client_actions.add_parser("delete", help="forget a client and revoke its tokens")
    _db(delete)
    _client_id(delete)


def _add_user_commands(user_actions: Any) -> None:
    user_create = user_actions.add_parser("create", help="create a user")
    _db(user_create)
    user_create.add_argument("--username", required=True, help="the name to sign in with")
    user_create.add_argument("--password-stdin", action="store_true", required=True,
                             help="read the password from stdin (never from the command line)")
    linked = user_create.add_mutually_exclusive_group()
    linked.add_argument("--patient", help="the user is this Patient (id; it must exist; "
                        "default: none)")
    linked.add_argument("--practitioner", help="the user is this Practitioner (id; default: "
                        "none)")
    listing = user_actions.add_parser("list", help="every user, without password hashes")
    _db(listing)
    for action, summary in (("disable", "refuse the user sign-in"),
                            ("enable", "let a disabled user sign in again")):
        parser = user_actions.add_parser(action, help=summary)
        _db(parser)
        parser.add_argument("--username", required=True, help="the user")


def _client_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-id", required=True, help="the client's id")


def _secret_key_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-key-file",
                        help="the key that seals the signing keys (default: beside a SQLite "
                             "database, else ./hygeia-secret.key; or set HYGEIA_SECRET_KEY)")


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")


def _credentials(parser: argparse.ArgumentParser) -> None:
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--jwks-file", help="the client's public keys (a JWK Set, JSON; "
                      "default: none)")
    kind.add_argument("--jwks-url", help="where the client publishes its public keys (a JWK "
                      "Set); fetched by the server when needed, and cached (default: none)")
    kind.add_argument("--secret", action="store_true",
                      help="give the client a shared secret (printed once)")


def run_auth(args: argparse.Namespace) -> int:
    from hygeia.store import DuplicateEntry, open_repository

    if args.auth_group is None or getattr(args, "auth_action", None) is None:
        args.help_parser.print_help(sys.stderr)
        return 2
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
    from hygeia.store import AuthStore, Client

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
    from hygeia.store import AuthStore

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
        try:
            jwks = json.loads(Path(args.jwks_file).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise SystemExit(f"{args.jwks_file} is not JSON ({error}): give a JWK Set "
                             "file") from None
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
    from hygeia.store import AuthStore, User

    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise SystemExit("The password must have at least 8 characters.")
    fhir_user = (f"Patient/{args.patient}" if args.patient else
                 f"Practitioner/{args.practitioner}" if args.practitioner else None)
    if args.patient:  # a patient user sees only their own compartment: it must exist
        _require_resource(repository, f"Patient/{args.patient}")
    AuthStore(repository).add_user(User(args.username, hash_password(password), fhir_user,
                                        now_us(), True))
    return {"username": args.username, "fhirUser": fhir_user}


def _require_resource(repository: Any, reference: str) -> None:
    """SystemExit unless ``Type/id`` is stored (a user linked to nothing sees nothing)."""
    kind, _, resource_id = reference.partition("/")
    with repository.reader() as session:
        current = session.current(kind, resource_id)
    if current is None or current.deleted:
        raise SystemExit(f"There is no {kind} '{resource_id}' in this database: load or "
                         f"create it first, or check the id (GET /fhir/{kind}?_elements=id).")


def _user_list(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.store import AuthStore

    return {"users": [{"username": user.username, "fhirUser": user.fhir_user,
                       "active": user.active, "created": format_instant(user.created)}
                      for user in AuthStore(repository).users()]}


def _user_set_active(active: bool) -> Any:
    def action(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
        from hygeia.store import AuthStore

        if not AuthStore(repository).set_user_active(args.username, active):
            raise SystemExit(f"There is no user '{args.username}' (see hygeia auth user list).")
        return {"username": args.username, "active": active}
    return action


def _client_list(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.store import AuthStore

    return {"clients": [{"client_id": client.client_id, "name": client.name,
                         "scopes": client.scopes, "active": client.active,
                         "kind": "public" if client.public else "confidential",
                         "redirect_uris": list(client.redirect_uris),
                         "created": format_instant(client.created)}
                        for client in AuthStore(repository).clients()]}


def _client_set_active(active: bool) -> Any:
    def action(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
        from hygeia.store import AuthStore

        store = AuthStore(repository)
        if not store.set_client_active(args.client_id, active):
            raise SystemExit(_no_client(args.client_id))
        result: dict[str, Any] = {"client_id": args.client_id, "active": active}
        if not active:
            _revoke_earlier_tokens(store, args.client_id)
            result["tokens_revoked_before"] = format_instant(now_us())
        return result
    return action


def _client_delete(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.store import AuthStore

    store = AuthStore(repository)
    if not store.delete_client(args.client_id):
        raise SystemExit(_no_client(args.client_id))
    _revoke_earlier_tokens(store, args.client_id)
    return {"client_id": args.client_id, "deleted": True}


def _no_client(client_id: str) -> str:
    return f"There is no client '{client_id}' (see hygeia auth client list)."


def _key_rotate(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.server.auth.secrets import SecretBox
    from hygeia.server.auth.signing import SecretKeyMismatch, Signer
    from hygeia.store import AuthStore

    path = Path(args.secret_key_file or default_secret_key_file(args.db))
    signer = Signer(AuthStore(repository), SecretBox.from_file(path))
    try:
        kid = signer.rotate(replace_unopenable=args.replace_lost_secret_key)
    except SecretKeyMismatch as error:
        raise SystemExit(secret_key_mismatch_message(str(error), str(path))) from None
    return {"kid": kid, "secret_key_file": str(path)}


def check_secret_key(repository: Any, secret_key_file: str) -> None:
    """Before serving with --auth: the secret key must open the database's signing key
    (a new key would hide the misconfiguration and invalidate every token issued); a
    database without one gets it now, before the serving processes start."""
    from hygeia.cli.errors import UserError
    from hygeia.server.auth.secrets import SecretBox
    from hygeia.server.auth.signing import SecretKeyMismatch, Signer
    from hygeia.store import AuthStore

    box = SecretBox.from_file(Path(secret_key_file))
    try:
        Signer(AuthStore(repository), box).ensure_active_key()
    except SecretKeyMismatch as error:
        raise UserError(secret_key_mismatch_message(str(error), secret_key_file)) from None


def secret_key_mismatch_message(reason: str, path: str) -> str:
    """The one line for a secret key that does not open this database's signing keys."""
    return (f"{reason} ({path}, or HYGEIA_SECRET_KEY when set): give the secret key file "
            "the server used before with --secret-key-file; if that key is lost, run "
            "hygeia auth key rotate --replace-lost-secret-key")


def _launch_create(repository: Any, args: argparse.Namespace) -> dict[str, Any]:
    from hygeia.server.auth.authorize import new_launch
    from hygeia.store import AuthStore

    launch = new_launch(AuthStore(repository), args.patient, args.encounter)
    return {"launch": launch, "patient": args.patient, "encounter": args.encounter}


def default_secret_key_file(db_url: str) -> str:
    """``hygeia.db`` keeps its secret key in ``hygeia-secret.key`` beside it; PostgreSQL in
    the working directory (or set HYGEIA_SECRET_KEY, the same for every server)."""
    return beside_database(db_url, "-secret.key")


_ACTIONS = {("client", "create"): _client_create, ("client", "rotate"): _client_rotate,
            ("client", "list"): _client_list, ("client", "disable"): _client_set_active(False),
            ("client", "enable"): _client_set_active(True), ("client", "delete"): _client_delete,
            ("user", "create"): _user_create, ("user", "list"): _user_list,
            ("user", "disable"): _user_set_active(False),
            ("user", "enable"): _user_set_active(True),
            ("key", "rotate"): _key_rotate, ("launch", "create"): _launch_create}
