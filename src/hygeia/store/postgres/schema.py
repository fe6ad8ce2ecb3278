"""PostgreSQL DDL; the same tables and columns as the SQLite schema."""

SCHEMA_VERSION = 1

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS resource_version (
        seq BIGSERIAL PRIMARY KEY,
        res_type TEXT NOT NULL,
        res_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL,
        method TEXT NOT NULL,
        content BYTEA,
        UNIQUE (res_type, res_id, version)
    )""",
    "CREATE INDEX IF NOT EXISTS resource_version_updated ON resource_version (last_updated)",
    """CREATE TABLE IF NOT EXISTS resource (
        res_type TEXT NOT NULL,
        res_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        version INTEGER NOT NULL,
        deleted BOOLEAN NOT NULL,
        last_updated BIGINT NOT NULL,
        PRIMARY KEY (res_type, res_id)
    )""",
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
