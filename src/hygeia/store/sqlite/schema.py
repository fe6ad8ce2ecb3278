"""SQLite DDL. Timestamps are integer microseconds since the epoch (UTC)."""

SCHEMA_VERSION = 1

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS resource_version (
        seq INTEGER PRIMARY KEY,
        res_type TEXT NOT NULL,
        res_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        method TEXT NOT NULL,
        content BLOB,
        UNIQUE (res_type, res_id, version)
    )""",
    "CREATE INDEX IF NOT EXISTS resource_version_updated ON resource_version (last_updated)",
    """CREATE TABLE IF NOT EXISTS resource (
        res_type TEXT NOT NULL,
        res_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        PRIMARY KEY (res_type, res_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (res_type, last_updated)",
    """CREATE TABLE IF NOT EXISTS token_index (
        res_type TEXT NOT NULL,
        res_id TEXT NOT NULL,
        param TEXT NOT NULL,
        system TEXT,
        code TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS token_index_lookup ON token_index (res_type, param, code)",
    "CREATE INDEX IF NOT EXISTS token_index_owner ON token_index (res_type, res_id)",
    "CREATE TABLE IF NOT EXISTS hygeia_schema (version INTEGER NOT NULL)",
)
