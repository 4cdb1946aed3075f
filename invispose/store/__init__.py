"""SQLite storage: pose history, persons, durable events, config rows, webhook outbox."""

from invispose.store.history import MAX_HISTORY_LIMIT
from invispose.store.schema import SCHEMA_VERSION
from invispose.store.store import Store

__all__ = ["MAX_HISTORY_LIMIT", "SCHEMA_VERSION", "Store"]
