"""The schema, written once for both databases.

Column types are named abstractly (``{text}``, ``{bigint}``, ``{real}``,
``{blob}``, ``{bool}``, ``{serial}``) and filled in per dialect, so SQLite and
PostgreSQL always have the same tables and columns.  docs/architecture.md
describes every table and column.
"""

from __future__ import annotations

from hygeia.store.migrations.core import CORE

# 4: number_index and quantity_index store a value range (low, high) instead of one value
# 5: token :text values live in token_index (token_text_index is gone)
# 6: one composite_index row per combination of component values (c0_*, c1_*, c2_*)
# 7: the durable job table; resource (res_type, pk) for walking one type in key order
# 8: SMART authorization tables (auth_client, auth_user, auth_key, auth_handle, auth_jti),
#    audit_outbox; the baseline of migrations (store/migrations/core.py)
# 9 and later: one entry each in store/migrations/core.py
SCHEMA_VERSION = CORE.latest  # the core layout this Hygeia writes


class SchemaVersionError(RuntimeError):
    """The database was laid out by a Hygeia with a different schema version."""


class PendingMigrations(SchemaVersionError):
    """The database is older than this Hygeia; ``hygeia db migrate`` brings it forward.

    ``pending`` names each stream and its step, such as ``core 8 -> 9``.
    """

    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        super().__init__(f"The database needs schema migrations ({', '.join(pending)}). "
                         "Run `hygeia db migrate` with the same --db first, or start the "
                         "server with --migrate.")


DIALECT_TYPES = {
    "sqlite": {"text": "TEXT", "ctext": "TEXT", "bigint": "INTEGER", "real": "REAL",
               "blob": "BLOB", "bool": "INTEGER", "serial": "INTEGER PRIMARY KEY"},
    # index values compare byte-wise ("C"), so prefix ranges and sorting are exact
    "postgresql": {"text": "TEXT", "ctext": 'TEXT COLLATE "C"', "bigint": "BIGINT",
                   "real": "DOUBLE PRECISION", "blob": "BYTEA", "bool": "BOOLEAN",
                   "serial": "BIGSERIAL PRIMARY KEY"},
}

_OWNER = "res_pk {bigint} NOT NULL, h_param {bigint} NOT NULL"

# index table -> its value columns (after res_pk, h_param), in IndexRows order
INDEX_TABLES: dict[str, tuple[str, ...]] = {
    "string_index": ("norm", "exact"),
    # text: a normalised display/text for :text, folded into a token row of the same
    # parameter (or a row of its own, system and code NULL, when there are more texts)
    "token_index": ("h_code", "system", "code", "text"),
    "reference_index": ("target_type", "target_id", "url", "version"),
    "date_index": ("low", "high"),
    "number_index": ("low", "high"),
    "quantity_index": ("low", "high", "system", "code", "unit"),
    "uri_index": ("uri",),
    # one row per combination of component values: component i fills c{i}_t1..t3 (texts)
    # and c{i}_n1, c{i}_n2 (numbers), see store/sql.py composite_rows
    "composite_index": tuple(f"c{i}_{slot}" for i in range(3)
                             for slot in ("t1", "t2", "t3", "n1", "n2")),
}
AUTH_TABLES = ("auth_client", "auth_user", "auth_key", "auth_handle", "auth_jti",
               "audit_outbox")
COMPOSITE_COMPONENTS = 3  # the most components a stored composite has (R4: 3)

_COLUMN_TYPES = {"low": "{bigint}", "high": "{bigint}", "h_code": "{bigint}",
                 **{f"c{i}_{slot}": "{real}" for i in range(3) for slot in ("n1", "n2")}}
# where a table's column differs from _COLUMN_TYPES: number ranges are floats, not microseconds
_TABLE_COLUMN_TYPES = {
    "number_index": {"low": "{real}", "high": "{real}"},
    "quantity_index": {"low": "{real}", "high": "{real}"},
}

# the one lookup index per table (besides the owner index on res_pk); token, reference
# and composite end with res_pk, so the driving clause's key list (search_sql.py) is read
# from the index alone: 10,000 body heights took 85 ms in table-row fetches, 3 ms without
_LOOKUPS = {
    "string_index": "h_param, norm",
    "token_index": "h_code, res_pk",
    "reference_index": "target_id, target_type, h_param, res_pk",
    "date_index": "h_param, low",
    "number_index": "h_param, low",
    "quantity_index": "h_param, low",
    "uri_index": "h_param, uri",
    # first component's code, then the second's range (high first: gt/ge/sa/eq bound it)
    "composite_index": "h_param, c0_t2, c1_n2, c1_n1, res_pk",
}

_CORE = (
    """CREATE TABLE IF NOT EXISTS resource_version (
        seq {serial},
        res_type {ctext} NOT NULL,
        res_id {ctext} NOT NULL,
        version INTEGER NOT NULL,
        last_updated {bigint} NOT NULL,
        deleted {bool} NOT NULL,
        method {text} NOT NULL,
        content {blob},
        UNIQUE (res_type, res_id, version)
    )""",
    "CREATE INDEX IF NOT EXISTS resource_version_updated ON resource_version (last_updated)",
    """CREATE TABLE IF NOT EXISTS resource (
        pk {serial},
        res_type {ctext} NOT NULL,
        res_id {ctext} NOT NULL,
        seq {bigint} NOT NULL,
        version INTEGER NOT NULL,
        deleted {bool} NOT NULL,
        last_updated {bigint} NOT NULL,
        UNIQUE (res_type, res_id)
    )""",
    "CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (res_type, last_updated)",
    # one type in key order: bulk export and reindex walk it, type-only searches page by it
    "CREATE INDEX IF NOT EXISTS resource_type_pk ON resource (res_type, pk)",
    "CREATE TABLE IF NOT EXISTS hygeia_schema (version INTEGER NOT NULL)",
    # every migration applied, of every stream (store/migrations/runner.py): the core
    # version stays in hygeia_schema as well, where older Hygeias read it
    """CREATE TABLE IF NOT EXISTS hygeia_migration (
        stream {ctext} NOT NULL,
        version INTEGER NOT NULL,
        description {text} NOT NULL,
        applied {bigint} NOT NULL,
        PRIMARY KEY (stream, version)
    )""",
    # background work (bulk export and import, reindex) that must survive a restart:
    # a worker holds a job by its lease and renews it; an expired lease frees the job
    """CREATE TABLE IF NOT EXISTS job (
        id {ctext} PRIMARY KEY,
        kind {text} NOT NULL,
        state {text} NOT NULL,
        request {text} NOT NULL,
        progress {text},
        result {text},
        error {text},
        attempts INTEGER NOT NULL,
        owner {text},
        lease_until {bigint},
        created {bigint} NOT NULL,
        updated {bigint} NOT NULL,
        expires {bigint}
    )""",
    "CREATE INDEX IF NOT EXISTS job_state ON job (state, lease_until)",
    # SMART on FHIR (server/auth): the apps allowed to ask for tokens and their scopes
    """CREATE TABLE IF NOT EXISTS auth_client (
        client_id {ctext} PRIMARY KEY,
        name {text} NOT NULL,
        secret_hash {text},
        jwks {text},
        redirect_uris {text} NOT NULL,
        scopes {text} NOT NULL,
        created {bigint} NOT NULL,
        active {bool} NOT NULL
    )""",
    # people who sign in at /auth/authorize; fhir_user links them to a Patient/Practitioner
    """CREATE TABLE IF NOT EXISTS auth_user (
        username {ctext} PRIMARY KEY,
        password_hash {text} NOT NULL,
        fhir_user {text},
        created {bigint} NOT NULL,
        active {bool} NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until {bigint}
    )""",
    # the server's token signing keys; the private half encrypted with the secret key,
    # which never enters the database; retired keys stay published until tokens expire
    """CREATE TABLE IF NOT EXISTS auth_key (
        kid {ctext} PRIMARY KEY,
        alg {text} NOT NULL,
        private_key {blob} NOT NULL,
        public_jwk {text} NOT NULL,
        created {bigint} NOT NULL,
        retired {bigint}
    )""",
    # one-time and revocable handles (authorization codes, refresh tokens, EHR launches),
    # keyed by a digest of the handle: the handle itself is never stored
    """CREATE TABLE IF NOT EXISTS auth_handle (
        digest {ctext} PRIMARY KEY,
        kind {text} NOT NULL,
        client_id {ctext} NOT NULL,
        data {text} NOT NULL,
        expires {bigint} NOT NULL,
        used {bigint}
    )""",
    # AuditEvents committed but not yet stored as resources (server/audit/outbox.py): a
    # request waits for one plain insert here, not for the event's index rows
    """CREATE TABLE IF NOT EXISTS audit_outbox (
        seq {serial},
        content {blob} NOT NULL
    )""",
    # how far `hygeia load` got with each input file, known by the SHA-256 of its bytes
    # (store/load_journal.py); written in the transaction that stores what it records
    """CREATE TABLE IF NOT EXISTS load_journal (
        source {ctext} PRIMARY KEY,
        progress {bigint} NOT NULL,
        complete {bool} NOT NULL,
        path {text} NOT NULL,
        updated {bigint} NOT NULL
    )""",
    # token ids that must not pass again: revoked access tokens, spent client assertions
    """CREATE TABLE IF NOT EXISTS auth_jti (
        jti {ctext} PRIMARY KEY,
        kind {text} NOT NULL,
        expires {bigint} NOT NULL
    )""",
)


def index_column_types(table: str) -> tuple[str, ...]:
    """The abstract types (``bigint``, ``real``, ``ctext``) of an index table's columns,
    ``res_pk`` and ``h_param`` first, as its rows are inserted."""
    types = {**_COLUMN_TYPES, **_TABLE_COLUMN_TYPES.get(table, {})}
    return ("bigint", "bigint",
            *(types.get(column, "{ctext}").strip("{}") for column in INDEX_TABLES[table]))


def _index_statements() -> list[str]:
    statements: list[str] = []
    for table, columns in INDEX_TABLES.items():
        types = {**_COLUMN_TYPES, **_TABLE_COLUMN_TYPES.get(table, {})}
        typed = ", ".join(f"{c} {types.get(c, '{ctext}')}" for c in columns)
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({_OWNER}, {typed})")
        # (res_pk, h_param): sorting and chains look up one parameter of one resource
        statements.append(f"CREATE INDEX IF NOT EXISTS {table}_owner ON {table} "
                          "(res_pk, h_param)")
    return statements + [statement for _, statement in lookup_indexes()]


# Text columns that lead a lookup index, and the length of the prefix indexed instead
# of the whole value: a PostgreSQL B-tree entry must fit a third of a page (2,704
# bytes), so a 2,700-character family name or a 10 KB valueString could not be stored
# at all.  256 characters are at most 1,024 bytes of UTF-8.  A search value no longer
# than the prefix is matched on the prefix alone (exact: see store/search_sql.py
# ``SqlBuilder.equal``); a longer one on the prefix and then the whole value.  SQLite
# has no such limit, but the same indexes and queries serve both databases.
PREFIX_CHARS = 256
PREFIXED_COLUMNS = {"string_index": "norm", "uri_index": "uri", "composite_index": "c0_t2",
                    "token_index": "text"}


def prefix(column: str) -> str:
    """The indexed prefix of a text column, as index and query must both spell it."""
    return f"substr({column}, 1, {PREFIX_CHARS})"


def _prefixed(table: str, columns: str) -> str:
    return columns.replace(PREFIXED_COLUMNS[table], prefix(PREFIXED_COLUMNS[table]), 1)


def lookup_indexes() -> list[tuple[str, str]]:
    """(name, DDL) of the index tables' lookup indexes, the same for both dialects.

    Their keys arrive in random order (hashes, uuids), so each row a load inserts
    lands on a random B-tree page; the owner indexes grow at their end (keys are
    allocated in increasing order).  A bulk load into an empty database builds
    these afterwards instead (see ``Repository.bulk_load``).  Long text keys are
    indexed by prefix (``PREFIXED_COLUMNS``), under another name than the
    whole-value index they replaced (``REPLACED_INDEXES``).
    """
    indexes: list[tuple[str, str]] = []
    for table in INDEX_TABLES:
        name, columns = f"{table}_lookup", _LOOKUPS[table]
        if table in PREFIXED_COLUMNS and table != "token_index":
            name, columns = f"{table}_prefix", _prefixed(table, columns)
        indexes.append((name, f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"))
    # date ranges by their end: gt/ge/eb/ap bound ``high``, not ``low`` (a range that
    # began long ago can still end after the search date), so without it a date clause
    # can only drive a query by scanning every row of its parameter (ADR core-date-search)
    indexes.append(("date_index_high",
                    "CREATE INDEX IF NOT EXISTS date_index_high ON date_index (h_param, high)"))
    # :text searches; most token rows carry no text, so the index holds only those that do
    text_key = _prefixed("token_index", "h_param, text, res_pk")
    indexes.append(("token_index_text_prefix", "CREATE INDEX IF NOT EXISTS "
                    f"token_index_text_prefix ON token_index ({text_key}) "
                    "WHERE text IS NOT NULL"))
    return indexes


# whole-value indexes of databases made before the prefix indexes (same layout version):
# dropped when such a database opens, after its prefix indexes were built, so it takes
# long values from then on
REPLACED_INDEXES = ("string_index_lookup", "uri_index_lookup", "composite_index_lookup",
                    "token_index_text")


def statements(dialect: str) -> list[str]:
    """Every DDL statement for ``dialect``, idempotent (IF NOT EXISTS)."""
    types = DIALECT_TYPES[dialect]
    replaced = [f"DROP INDEX IF EXISTS {name}" for name in REPLACED_INDEXES]
    return [statement.format(**types) for statement in (*_CORE, *_index_statements())
            ] + replaced
