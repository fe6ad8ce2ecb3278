"""Entry point of the ``hygeia`` command."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from rich.console import Console

# the server's own migration stream, known before any command opens a database (a
# database laid out without it would later need `hygeia db migrate`)
import hygeia.server.subscriptions.tables  # noqa: F401
from hygeia import __version__
from hygeia.cli.auth import (
    add_auth_commands,
    check_secret_key,
    default_secret_key_file,
    run_auth,
)
from hygeia.cli.database import add_db_commands, is_new_database, run_db
from hygeia.cli.errors import (
    OneLineErrorParser,
    UserError,
    check_database_url,
    check_port,
    describe,
)
from hygeia.cli.pillars import add_commands as add_pillar_commands
from hygeia.cli.pillars import add_serve_options as add_pillar_serve_options
from hygeia.cli.pillars import (
    install_pillars,
    listen_addresses,
    pillar_demos,
    pillar_options,
)
from hygeia.cli.runtime import (
    LOAD_SWITCH_INTERVAL,
    LOAD_YOUNG_THRESHOLD,
    SERVE_SWITCH_INTERVAL_MS,
    beside_database,
    default_threads,
    tune_garbage_collector,
)
from hygeia.store import DEFAULT_URL

if TYPE_CHECKING:
    from hygeia.server import HttpSettings, Settings, SubscriptionSettings

EPILOG_SERVE = "example: hygeia serve --demo --port 8080   # then GET http://127.0.0.1:8080/fhir/metadata"
DESCRIPTION_SERVE = ("Run the FHIR server. Every option can also be set in the environment as "
                     "HYGEIA_ and its name in capitals (HYGEIA_PORT=8080, "
                     "HYGEIA_MAX_BODY_MB=16); a flag wins over its variable.")
EPILOG_LOAD = """example: hygeia load --db sqlite:///./hygeia.db export/Patient.ndjson.gz bundles/
example: hygeia load --upsert --workers 4 --db postgresql://postgres@127.0.0.1:5432/hygeia export/

NDJSON files (.ndjson, .ndjson.gz) are parsed, validated and indexed in --workers
processes and stored in large batches; a bad line is reported as FILE:LINE and the
rest still loads.  Transaction/batch Bundles (.json, .json.gz) are each one transaction.
A killed load finishes exactly when run again: loaded files are skipped, a partly
loaded file resumes after its committed part (--reload loads everything again)."""
SHOWN_ERRORS = 50  # errors printed by ``hygeia load``; the summary counts them all
EPILOG_VALIDATE = "example: hygeia validate patient.json bundle.json.gz"
ENVIRONMENT_PREFIX = "HYGEIA_"  # HYGEIA_MAX_BODY_MB is --max-body-mb of hygeia serve
TRUE_WORDS, FALSE_WORDS = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})
TYPE_NAMES: dict[object, str] = {int: "a whole number", float: "a number"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="hygeia", description="Hygeia FHIR R4 data hub.")
    parser.add_argument("--version", action="version", version=f"hygeia {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of its one-line summary")
    parser.set_defaults(help_parser=parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    serve = commands.add_parser("serve", help="run the FHIR server", epilog=EPILOG_SERVE,
                                description=DESCRIPTION_SERVE)
    serve.add_argument("--host", default="127.0.0.1",
                       help="the address to listen on (default 127.0.0.1: this machine only; "
                            "any other turns --auth on)")
    serve.add_argument("--port", type=int, default=8080,
                       help="the TCP port to listen on, 1 to 65535 (default 8080; 0: any free "
                            "port)")
    serve.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    serve.add_argument("--demo", action="store_true",
                       help="load the built-in demo patients when the database is empty")
    serve.add_argument("--auth", action="store_true",
                       help="require SMART on FHIR access tokens (always on when --host is not "
                            "a loopback address) and keep an audit trail")
    serve.add_argument("--secret-key-file", default=None,
                       help="the key that seals the token signing keys (default: beside a "
                            "SQLite database, else ./hygeia-secret.key; or set "
                            "HYGEIA_SECRET_KEY)")
    serve.add_argument("--token-minutes", type=float, default=60.0,
                       help="lifetime of an access token in minutes (default 60)")
    serve.add_argument("--oidc-issuer", default=None,
                       help="accept tokens from this OpenID Connect provider instead of "
                            "issuing them (implies --auth; default: none, Hygeia issues "
                            "its own)")
    serve.add_argument("--oidc-audience", default=None,
                       help="the aud those tokens carry (default: the FHIR base URL)")
    serve.add_argument("--oidc-jwks-url", default=None,
                       help="the provider's keys (default: from its openid-configuration)")
    serve.add_argument("--outbound-allow", action="append", default=[],
                       help="an address, network (10.0.0.0/8) or host name the server may "
                            "fetch from for a client (JWKS URLs) although it is not public; "
                            "repeatable (default: public addresses only)")
    serve.add_argument("--outbound-timeout", type=float, default=5.0,
                       help="seconds an outbound fetch may take in all (default 5)")
    serve.add_argument("--max-body-mb", type=float, default=64.0,
                       help="largest accepted request body in MB (default 64)")
    serve.add_argument("--max-bundle-entries", type=int, default=10_000,
                       help="most entries in one batch or transaction Bundle (default 10000; "
                            "more get 413: use $import or hygeia load)")
    serve.add_argument("--max-patch-operations", type=int, default=1000,
                       help="most operations in one JSON Patch or FHIRPath Patch "
                            "(default 1000)")
    serve.add_argument("--threads", type=int, default=default_threads(),
                       help="request threads (default: 2 per core plus 1, "
                            f"{default_threads()} here)")
    serve.add_argument("--no-offload", action="store_true",
                       help="extract index rows and validate transactions on the request "
                            "thread instead of in a helper process")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="access log lines as text or as one JSON object each "
                            "(default text)")
    serve.add_argument("--public-metrics", action="store_true",
                       help="with --auth: let anyone who reaches the port read /metrics "
                            "(request counts and latencies; default: 403 with --auth)")
    serve.add_argument("--audit", action="store_true",
                       help="record every read, search, write, export and sign-in as an "
                            "AuditEvent (on with --auth too)")
    serve.add_argument("--audit-async", action="store_true",
                       help="with --audit: answer without waiting for the AuditEvent's "
                            "commit (faster; a crash can lose the last milliseconds of "
                            "records)")
    serve.add_argument("--workers", type=int, default=1,
                       help="serving processes (default 1); each also runs background jobs. "
                            "Several pay off on PostgreSQL; SQLite has one writer at a time")
    serve.add_argument("--gil-switch-interval", type=float, default=SERVE_SWITCH_INTERVAL_MS,
                       metavar="MS",
                       help="milliseconds a thread waiting for Python's interpreter lock "
                            "lets a busy thread run on, in every serving process (default "
                            f"{SERVE_SWITCH_INTERVAL_MS:g}; shorter hands the lock back "
                            "sooner to a thread returning from the database)")
    serve.add_argument("--files", default=None,
                       help="folder for bulk export files and files to import (default: "
                            "next to a SQLite database, else ./hygeia-files)")
    serve.add_argument("--export-file-mb", type=float, default=256.0,
                       help="start a new export file after this many MB (default 256)")
    serve.add_argument("--job-lease", type=float, default=30.0,
                       help="seconds after which a job whose process stopped answering is "
                            "taken over by another (default 30; a job of a process that died "
                            "on this host is taken over at once)")
    serve.add_argument("--keep-hours", type=float, default=24.0,
                       help="hours export files are kept after the export (default 24)")
    serve.add_argument("--statement-timeout", type=float, default=10.0,
                       help="seconds a database query of a request may run before it is "
                            "stopped and answered 503 (default 10; 0: no limit)")
    serve.add_argument("--job-statement-timeout", type=float, default=600.0,
                       help="the same for bulk export, import and reindex jobs and for "
                            "writes (default 600)")
    serve.add_argument("--max-search-values", type=int, default=100,
                       help="comma-separated values one search parameter may have "
                            "(default 100)")
    serve.add_argument("--max-json-values", type=int, default=1_000_000,
                       help="JSON values one request body may hold (default 1000000; "
                            "memory follows the count of values more than the bytes)")
    serve.add_argument("--max-included", type=int, default=1000,
                       help="_include/_revinclude resources added to one page of results "
                            "(default 1000; a warning entry says when some were left out)")
    serve.add_argument("--max-chain-depth", type=int, default=3,
                       help="references one chained search or _has may follow (default 3)")
    serve.add_argument("--base-url", default=None,
                       help="the server root as clients reach it, scheme://host:port (the FHIR "
                            "base is it plus /fhir); used in every link, discovery document and "
                            "token audience (default: from --host and --port; required when "
                            "--host is a wildcard such as 0.0.0.0)")
    add_http_limit_flags(serve)
    add_subscription_flags(serve)
    serve.add_argument("--migrate", action="store_true",
                       help="apply pending schema migrations before serving (default: refuse "
                            "a database that needs them; see hygeia db migrate)")
    serve.add_argument("--referential-integrity", action="store_true",
                       help="local references must resolve on every create, update, patch "
                            "and Bundle, and a referenced resource cannot be deleted "
                            "(409) unless with ?_cascade=delete (default: off)")
    serve.set_defaults(pillar_destinations=add_pillar_serve_options(serve))

    load = commands.add_parser("load", help="load Bundles/NDJSON into the database",
                               epilog=EPILOG_LOAD,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    load.add_argument("paths", nargs="+",
                      help="files or folders (.ndjson, .ndjson.gz, .json, .json.gz)")
    load.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")
    load.add_argument("--workers", type=int, default=None, metavar="N",
                      help="processes that parse, validate and index NDJSON (default: one per "
                           f"core, {os.cpu_count() or 1} here, or none for less than 1 MB of "
                           "NDJSON; 0 = in the loading process)")
    load.add_argument("--upsert", action="store_true",
                      help="a resource whose id is already stored becomes its next version "
                           "(without it, that line is an error and is skipped)")
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    load.add_argument("--reload", action="store_true",
                      help="load every file from its start, even those this database's load "
                           "journal records as loaded (a rerun skips them)")

    add_auth_commands(commands)
    add_db_commands(commands)
    add_pillar_commands(commands)

    validate = commands.add_parser("validate", help="validate FHIR JSON files",
                                   epilog=EPILOG_VALIDATE)
    validate.add_argument("paths", nargs="+",
                          help="files or folders (.json, .json.gz, .ndjson, .ndjson.gz)")
    return parser


def add_http_limit_flags(serve: argparse.ArgumentParser) -> None:
    """The HTTP front end's limits (api/http/limits.py; docs/guide/server.md)."""
    limits = serve.add_argument_group("HTTP limits")
    limits.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                        help="seconds for a whole request head to arrive (default 10; then 408)")
    limits.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                        help="longest pause in a request body, or in a client taking its "
                             "answer (default 30; then 408 or a close)")
    limits.add_argument("--keepalive-timeout", type=float, default=15.0, metavar="S",
                        help="idle keep-alive connections are closed after this (default 15)")
    limits.add_argument("--max-url-kb", type=float, default=16.0, metavar="KB",
                        help="longest request target (path and query) in KB (default 16; "
                             "then 414)")
    limits.add_argument("--max-header-kb", type=float, default=64.0, metavar="KB",
                        help="all request headers together in KB (default 64; then 431)")
    limits.add_argument("--max-headers", type=int, default=100, metavar="N",
                        help="header lines per request (default 100; then 431)")
    limits.add_argument("--max-client-connections", type=int, default=32, metavar="N",
                        help="open connections per client address and serving process "
                             "(default 32; then 429)")
    limits.add_argument("--max-connections", type=int, default=1000, metavar="N",
                        help="open connections per serving process (default 1000; then 503)")
    limits.add_argument("--max-buffered-mb", type=float, default=512.0, metavar="MB",
                        help="request bodies held in memory at once per serving process "
                             "(default 512, never less than --max-body-mb; then 503)")


def add_subscription_flags(serve: argparse.ArgumentParser) -> None:
    """FHIR Subscriptions (server/subscriptions; docs/guide/subscriptions.md)."""
    group = serve.add_argument_group("Subscriptions")
    group.add_argument("--ws-port", type=int, default=None, metavar="N",
                       help="serve the websocket notification channel on this port of --host "
                            "(default: off; rest-hook notifications need no port)")
    group.add_argument("--subscription-retry-seconds", type=float, default=1.0, metavar="S",
                       help="first delay before a failed rest-hook delivery is retried, "
                            "doubling up to 300 (default 1)")
    group.add_argument("--subscription-max-failures", type=int, default=5, metavar="N",
                       help="failed deliveries in a row after which a subscription's status "
                            "turns to error (default 5)")
    group.add_argument("--subscription-poll-seconds", type=float, default=1.0, metavar="S",
                       help="how often delivery and the websocket channel look for new "
                            "notifications and due heartbeats (default 1)")


def subscription_settings(args: argparse.Namespace, base_url: str) -> SubscriptionSettings:
    """The subscriptions section of the settings; the websocket URL clients are given
    uses the host name of the server's base URL."""
    from urllib.parse import urlsplit

    from hygeia.server import SubscriptionSettings

    ws_url = None
    if args.ws_port is not None:
        ws_url = f"ws://{urlsplit(base_url).hostname or args.host}:{args.ws_port}"
    return SubscriptionSettings(
        max_failures=max(1, args.subscription_max_failures),
        retry_seconds=max(0.01, args.subscription_retry_seconds),
        poll_seconds=max(0.01, args.subscription_poll_seconds),
        ws_port=args.ws_port, ws_host=args.host, ws_url=ws_url)


def http_settings(args: argparse.Namespace) -> HttpSettings:
    """The HTTP front end's section of the settings, from its flags."""
    from hygeia.server import HttpSettings

    return HttpSettings(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                        keepalive_timeout=args.keepalive_timeout,
                        max_url_bytes=int(args.max_url_kb * 1024),
                        max_header_bytes=int(args.max_header_kb * 1024),
                        max_headers=args.max_headers,
                        max_client_connections=args.max_client_connections,
                        max_connections=args.max_connections,
                        max_buffered_bytes=int(args.max_buffered_mb * 1024 ** 2),
                        host=args.host)


def serve_settings(args: argparse.Namespace, *, auth: bool, base_url: str) -> Settings:
    """``hygeia serve``'s settings from its flags, a section per subsystem."""
    from hygeia.server import (
        AuditSettings,
        AuthSettings,
        JobSettings,
        OutboundSettings,
        SearchSettings,
        Settings,
    )

    return Settings(
        max_body_bytes=int(args.max_body_mb * 1024 ** 2),
        max_bundle_entries=args.max_bundle_entries,
        max_patch_operations=args.max_patch_operations,
        max_json_values=max(1, args.max_json_values),
        statement_timeout=max(0.0, args.statement_timeout),
        offload=not args.no_offload and (os.cpu_count() or 1) > 1,
        base_url=base_url, public_metrics=args.public_metrics, migrate=args.migrate,
        referential_integrity=args.referential_integrity,
        search=SearchSettings(max_values=max(1, args.max_search_values),
                              max_included=max(0, args.max_included),
                              max_chain_depth=max(0, args.max_chain_depth)),
        jobs=JobSettings(files_dir=args.files or default_files_dir(args.db),
                         export_file_bytes=int(args.export_file_mb * 1024 ** 2),
                         lease_seconds=args.job_lease, keep_seconds=args.keep_hours * 3600,
                         statement_timeout=max(0.0, args.job_statement_timeout)),
        auth=AuthSettings(enabled=auth,
                          secret_key_file=args.secret_key_file or
                          default_secret_key_file(args.db),
                          access_token_seconds=max(1, int(args.token_minutes * 60)),
                          oidc_issuer=args.oidc_issuer, oidc_audience=args.oidc_audience,
                          oidc_jwks_url=args.oidc_jwks_url),
        outbound=OutboundSettings(allow=tuple(args.outbound_allow),
                                  timeout_seconds=args.outbound_timeout),
        audit=AuditSettings(enabled=auth or args.audit, durable=not args.audit_async),
        http=http_settings(args), subscriptions=subscription_settings(args, base_url))


def check_http_limits(args: argparse.Namespace) -> None:
    """ValueError naming the first HTTP limit flag that is not positive."""
    for flag, value in (("--header-timeout", args.header_timeout),
                        ("--body-timeout", args.body_timeout),
                        ("--keepalive-timeout", args.keepalive_timeout),
                        ("--max-url-kb", args.max_url_kb), ("--max-header-kb", args.max_header_kb),
                        ("--max-headers", args.max_headers),
                        ("--max-client-connections", args.max_client_connections),
                        ("--max-connections", args.max_connections),
                        ("--max-buffered-mb", args.max_buffered_mb)):
        if value <= 0:
            raise ValueError(f"{flag} must be more than 0 (got {value})")


def public_base_url(args: argparse.Namespace) -> str:
    """``--base-url``, or the one the bind address implies; ValueError says why not."""
    from hygeia.api.http.host import WILDCARD_HOSTS, default_base_url, parse_base_url

    if args.base_url is not None:
        return parse_base_url(args.base_url)
    if args.host in WILDCARD_HOSTS:
        raise ValueError(f"--host {args.host} listens on every address, so the address "
                         "clients use is unknown: give it with --base-url "
                         "(for example --base-url https://fhir.example.org)")
    return default_base_url(args.host, args.port)


def environment_variable(option: str) -> str:
    """The variable that stands for a ``hygeia serve`` option: ``--max-body-mb`` is
    ``HYGEIA_MAX_BODY_MB``."""
    return ENVIRONMENT_PREFIX + option.removeprefix("--").replace("-", "_").upper()


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    command: argparse.ArgumentParser = commands.choices[name]
    return command


def apply_environment(command: argparse.ArgumentParser,
                      environ: Mapping[str, str]) -> dict[str, Any]:
    """Make every option of ``command`` whose variable is set (and not empty) default to
    its value, so the command line still wins (containers configure by environment);
    the defaults set.

    UserError naming the variable when a value does not convert, as the flag would not.
    """
    defaults: dict[str, Any] = {}
    for action in command._actions:
        for option in action.option_strings:
            variable = environment_variable(option)
            if option.startswith("--") and option != "--help" and environ.get(variable):
                defaults[action.dest] = environment_value(action, variable, environ[variable])
    command.set_defaults(**defaults)
    return defaults


def environment_value(action: argparse.Action, variable: str, text: str) -> Any:
    """The value of one option from its variable: yes/no for a switch, a comma-separated
    list for a repeatable option, else converted as the flag's own value is."""
    if isinstance(action, argparse._StoreConstAction):
        word = text.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise UserError(f"{variable}={text}: give 1, true or yes to turn "
                            f"{action.option_strings[0]} on, 0, false or no to leave it off")
        return action.const if word in TRUE_WORDS else action.default
    if isinstance(action, argparse._AppendAction):
        return [_converted(action, variable, item.strip())
                for item in text.split(",") if item.strip()]
    return _converted(action, variable, text)


def _converted(action: argparse.Action, variable: str, text: str) -> Any:
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except (TypeError, ValueError):
        expected = TYPE_NAMES.get(convert, f"a valid {action.option_strings[0]} value")
        raise UserError(f"{variable}={text} is not {expected} "
                        f"(it stands for {action.option_strings[0]})") from None
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{variable}={text}: give one of "
                        + ", ".join(str(choice) for choice in action.choices))
    return value


def parse_arguments(argv: list[str] | None,
                    environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    """The command line, with ``hygeia serve``'s options defaulting to their HYGEIA_*
    variables (read only for serve: a bad HYGEIA_PORT must not stop ``hygeia load``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        return args
    defaults = apply_environment(subcommand(parser, "serve"), environ)
    args = parser.parse_args(argv)
    for dest, value in defaults.items():
        given = getattr(args, dest)
        # argparse appends a repeated flag to a copy of its default: the flags replace it
        if isinstance(value, list) and given is not value:
            setattr(args, dest, given[len(value):])
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error ends it with one ``error:`` line (cli/errors.py)."""
    try:
        args = parse_arguments(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = run_command(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as error:
        message = describe(error, getattr(args, "db", None))
        if message is None or args.debug:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


def _reader_went_away() -> int:
    """The reader of our output stopped reading (``hygeia auth client list | head``): end
    quietly, as a Unix filter killed by SIGPIPE does (status 128 + 13), instead of a
    traceback; stdout goes to /dev/null so flushing it at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def run_command(args: argparse.Namespace) -> int:
    if args.command is None:  # a bare ``hygeia``: what it can do
        args.help_parser.print_help(sys.stderr)
        return 2
    pillar_command = getattr(args, "pillar_command", None)
    if pillar_command is not None:
        return int(pillar_command.run(args))
    if getattr(args, "db", None) is not None:
        check_database_url(args.db)
    if args.command == "serve":
        return serve(args)
    if args.command == "load":
        return load(args)
    if args.command == "auth":
        return run_auth(args)
    if args.command == "db":
        return run_db(args)
    from hygeia.cli.validating import validate_files

    return validate_files(args.paths)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    from hygeia.cli.first_steps import demo_patients, first_steps
    from hygeia.cli.serving import ListenError, ServeOptions, listen, listen_shared, run
    from hygeia.server import AuditSettings, AuthSettings, FhirService
    from hygeia.store import open_repository

    console = Console(stderr=True, soft_wrap=True)  # a log line is never wrapped
    auth = args.auth or bool(args.oidc_issuer) or not is_loopback(args.host)
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: give 1 or more serving processes")
    check_port(args.port)
    if args.ws_port is not None and not 1 <= args.ws_port <= 65535:
        raise UserError(f"--ws-port {args.ws_port} is out of range: give a port from 1 to "
                        "65535 (for example --ws-port 8081)")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: give 1 or more request threads")
    if not 0 < args.gil_switch_interval <= 1000:
        raise UserError(f"--gil-switch-interval {args.gil_switch_interval:g}: give "
                        "milliseconds above 0, at most 1000 (for example 5)")
    try:
        check_http_limits(args)
        base_url = public_base_url(args)
        if args.ws_port is not None:  # the websocket channel binds it in a serving process:
            listen(args.host, args.ws_port).close()  # a taken port is one error line here
        listener = listen(args.host, args.port)
    except (ValueError, ListenError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:  # the pillars' shared listeners (MLLP), bound here to serve in every process
        shared = listen_shared(listen_addresses(
            pillar_options(args, args.pillar_destinations), args.host))
    except (ValueError, ListenError) as error:
        listener.close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = serve_settings(args, auth=auth, base_url=base_url)
    # opened here to refuse a database of another layout before serving, and for the
    # demo; closed again because the serving worker opens its own after the fork
    new = is_new_database(args.db)  # laid out from nothing: no migration to report
    repository = open_repository(args.db, migrate=settings.migrate)
    try:
        for stream, migration in [] if new else repository.applied_migrations:
            console.print(f"Migrated {stream} to {migration.version}: {migration.description}")
        if auth:
            check_secret_key(repository, settings.auth.secret_key_file or "")
        introduction: list[str] = []
        if args.demo:
            # no offload helper here: this process forks the server next
            # nor auditing: loading the demo is not a request through the API
            demo_service = FhirService(repository, replace(
                settings, offload=False, audit=AuditSettings(), auth=AuthSettings()))
            install_pillars(demo_service, pillar_options(args, args.pillar_destinations))
            load_demo(demo_service, console)
            introduction = first_steps(demo_patients(demo_service), f"{base_url}/fhir", auth)
            introduction += pillar_demos(demo_service, f"{base_url}/fhir")
    finally:
        repository.close()
    console.print(f"[bold green]Hygeia[/] FHIR R4 server at {base_url}/fhir "
                  f"({repository.dialect}: {args.db})")
    if introduction:  # no empty line: standard output may be a JSON access log
        print("\n".join(introduction), flush=True)  # stdout, unwrapped: ready to paste
    if auth:
        console.print(f"SMART on FHIR authorization on: {base_url}"
                      "/fhir/.well-known/smart-configuration")
    else:
        console.print("[bold red]NO AUTHENTICATION:[/] anyone who can reach this port can read "
                      "and write all data. Use --auth (always on beyond loopback).")
    return run(ServeOptions(db_url=args.db, settings=settings, host=args.host, port=args.port,
                            threads=args.threads, access_log=args.access_log,
                            workers=args.workers, log_format=args.log_format,
                            switch_interval_ms=args.gil_switch_interval,
                            pillar_options=pillar_options(args, args.pillar_destinations)),
               listener, shared)


def default_files_dir(db_url: str) -> str:
    """``hygeia.db`` keeps its files in ``hygeia-files`` beside it; PostgreSQL in the cwd."""
    return beside_database(db_url, "-files")


def load_demo(service: object, console: Console) -> None:
    """Load the packaged demo patients once (skipped when the database holds patients: a
    pillar may have stored what it needs, such as a SearchParameter, before this)."""
    from hygeia.cli.load import load_paths, summary
    from hygeia.server import FhirService
    from hygeia.store import HistoryQuery

    assert isinstance(service, FhirService)
    with service.repository.reader() as session:
        if session.history(HistoryQuery(resource_type="Patient", count=1)):
            console.print("Database already holds data; demo data not loaded again.")
            return
    demo = files("hygeia.cli") / "demo"
    report, count = load_paths(service, [str(demo)], console)
    console.print("Demo data: " + summary(report, count))


def load(args: argparse.Namespace) -> int:
    from hygeia.cli.load import load_paths, summary
    from hygeia.server import FhirService, Settings
    from hygeia.server.memory.allocator import tune_this_process
    from hygeia.store import open_repository

    console = Console(stderr=True)
    tune_garbage_collector(LOAD_YOUNG_THRESHOLD)
    tune_this_process()
    sys.setswitchinterval(LOAD_SWITCH_INTERVAL)
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: give 0 (load in this process) or more")
    # a Bundle file of any size loads as one transaction: the entry limit guards the API
    unlimited = Settings(max_bundle_entries=sys.maxsize)
    with open_repository(args.db) as repository:
        report, files = load_paths(FhirService(repository, unlimited), args.paths, console,
                                   quiet=args.quiet, workers=args.workers, upsert=args.upsert,
                                   reload=args.reload)
    for error in report.first_errors[:SHOWN_ERRORS]:  # plain lines: one per error, easy to grep
        print(f"error: {error}", file=sys.stderr)
    if report.errors > SHOWN_ERRORS:
        print(f"... and {report.errors - SHOWN_ERRORS} more errors", file=sys.stderr)
    print(summary(report, files))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
