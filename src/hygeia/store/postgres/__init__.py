"""PostgreSQL backend: the production store for several stateless API workers."""

from hygeia.store.postgres.repository import PostgresRepository

__all__ = ["PostgresRepository"]
