"""``hygeia view run|materialize|list`` and ``hygeia sql``: views from the command line.

``view run`` writes a view's rows (csv, ndjson, json or Parquet) to a file or
stdout; ``view materialize`` keeps them as a table and a Parquet file (see
:mod:`hygeia.analytics.materialize`); ``sql`` runs DuckDB SQL over the Parquet
files of the materialized views, each visible as a table ``view_<name>``. DuckDB
reads local Parquet with no extension, so nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from hygeia.analytics.formats import FORMATS
from hygeia.analytics.materialize import materialize, materialized, registered
from hygeia.analytics.refresh import CONSUMER
from hygeia.analytics.run import RowsFailed, compiled, run_encoded
from hygeia.analytics.source import Selection, stored_resources
from hygeia.fhir.outcome import FhirError
from hygeia.store import DEFAULT_URL, Repository, feed_position, open_repository

DEFAULT_FOLDER = "analytics"


def _read_view(path: str) -> dict[str, Any]:
    try:
        view = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as error:
        raise FhirError(f"{path} is not JSON: {error}") from error
    if not isinstance(view, dict):
        raise FhirError(f"{path} does not hold a ViewDefinition (a JSON object)")
    return view


@contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """Standard output, or ``path`` written aside and renamed into place only once whole
    (a run that fails leaves no file, never a short one)."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = Path(path + ".partial")
    try:
        with open(partial, "wb") as out:
            yield out
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")


def status_lines(repository: Repository) -> list[str]:
    """One line per materialized view: its table, the feed position it is current to,
    how many feed entries it is behind, and the same of its Parquet file (the
    refreshers run in ``hygeia serve``)."""
    horizon = repository.feed_horizon()
    cursor = feed_position(repository, CONSUMER)
    lines = []
    for view in registered(repository):
        at = max(view.since, cursor or 0)
        refresh = (
            "refreshed by the change feed"
            if cursor is not None
            else "not refreshed yet (no server has run the refresher)"
        )
        lines.append(
            f"{view.table}\tcursor {at}\tlag {max(0, horizon - at)}\t"
            f"parquet lag {max(0, horizon - view.parquet_seq)}\t{refresh}"
        )
    return lines


class ViewCommand:
    """``hygeia view run|materialize VIEW.json`` and ``hygeia view list``."""

    name = "view"
    help = "SQL on FHIR views: run one, materialize one, list the materialized"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(
            dest="view_action", metavar="ACTION", title="actions", required=True
        )
        run = actions.add_parser(
            "run",
            help="run a ViewDefinition and write its rows",
            description="Run a SQL on FHIR v2 ViewDefinition over the store.",
        )
        run.add_argument(
            "views",
            metavar="VIEW.json",
            nargs="+",
            help="the ViewDefinition (JSON file); several need --out-dir",
        )
        _db_option(run)
        run.add_argument(
            "--format", choices=sorted(FORMATS), default="csv", help="row format (default csv)"
        )
        run.add_argument("--out", metavar="FILE",
                         help="write here (default: standard output)")
        run.add_argument(
            "--out-dir",
            metavar="DIR",
            help="write each view to DIR/<file stem>.<format> (a view that fails is reported "
            "and the others still run; default: none, --out or standard output)",
        )
        run.add_argument("--no-header", action="store_true", help="csv without a header line")
        run.add_argument("--limit", type=int, metavar="N",
                         help="at most N rows (default: every row)")
        keep = actions.add_parser(
            "materialize",
            help="keep a view as a table and Parquet",
            description="Run a view into the table view_<name> (schema "
            "analytics on PostgreSQL) and a Parquet file.",
        )
        keep.add_argument("view", metavar="VIEW.json", help="the ViewDefinition (JSON file)")
        _db_option(keep)
        keep.add_argument(
            "--dir",
            default=DEFAULT_FOLDER,
            metavar="DIR",
            help=f"folder of the Parquet files (default ./{DEFAULT_FOLDER})",
        )
        listing = actions.add_parser("list", help="the materialized views")
        _db_option(listing)
        status = actions.add_parser(
            "status", help="each materialized view's refresh cursor and lag behind the change feed"
        )
        _db_option(status)

    def run(self, args: argparse.Namespace) -> int:
        try:
            return self._run(args)
        except FhirError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    def _run(self, args: argparse.Namespace) -> int:
        if args.view_action == "status":
            with open_repository(args.db) as repository:
                for line in status_lines(repository):
                    print(line)
            return 0
        if args.view_action == "list":
            with open_repository(args.db) as repository:
                for table, parquet, rows in materialized(repository):
                    print(f"{table}\t{rows} rows\t{parquet}")
            return 0
        if args.view_action == "materialize":
            raw = _read_view(args.view)
            view = compiled(raw)
            with open_repository(args.db) as repository:
                done = materialize(repository, raw, view, Path(args.dir))
            print(f"{done.table}: {done.rows} rows; {done.parquet}")
            return 0
        if args.limit is not None and args.limit < 1:
            raise FhirError("--limit must be at least 1")
        if len(args.views) > 1 and args.out_dir is None:
            raise FhirError("several views need --out-dir (one file each)")
        if args.out_dir is not None and args.out is not None:
            raise FhirError("give --out or --out-dir, not both")
        failed = 0
        with open_repository(args.db) as repository:
            for path in args.views:
                target = args.out
                if args.out_dir is not None:
                    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
                    target = str(Path(args.out_dir) / f"{Path(path).stem}.{args.format}")
                try:
                    self._run_one(repository, path, target, args)
                except FhirError as error:
                    if len(args.views) == 1:
                        raise
                    print(f"error: {path}: {error}", file=sys.stderr)
                    failed += 1
        return 2 if failed else 0

    def _run_one(
        self, repository: Any, path: str, target: str | None, args: argparse.Namespace
    ) -> None:
        view = compiled(_read_view(path))
        resources = stored_resources(repository.reader, Selection(view.resource))
        encoded = run_encoded(view, resources, args.format, not args.no_header, args.limit)
        try:
            with _output(target) as out:
                for chunk in encoded.chunks:
                    out.write(chunk)
        except RowsFailed as error:
            raise FhirError(str(error)) from error


class SqlCommand:
    """``hygeia sql "SELECT ..."``: DuckDB over the materialized views' Parquet files."""

    name = "sql"
    help = "DuckDB SQL over the materialized views (tables view_<name>)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "query", metavar="SQL", help='the query, e.g. "SELECT count(*) FROM view_patient"'
        )
        _db_option(parser)
        parser.add_argument(
            "--format",
            choices=("csv", "json"),
            default="csv",
            help="result format (default csv with a header)",
        )

    def run(self, args: argparse.Namespace) -> int:
        import duckdb

        try:
            with open_repository(args.db) as repository:
                views = materialized(repository)
        except FhirError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        connection = duckdb.connect(":memory:")
        try:
            for table, parquet, _ in views:
                if parquet.exists():
                    path = str(parquet).replace("'", "''")
                    connection.execute(
                        f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')"
                    )
            result = connection.execute(args.query)
            columns = [d[0] for d in result.description or []]
            rows = result.fetchall()
        except duckdb.Error as error:
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 2
        finally:
            connection.close()
        if args.format == "json":
            for row in rows:
                sys.stdout.write(
                    orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n"
                )
            return 0
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return 0
