"""Storage over SQLAlchemy (async): client keys and the audit ledger, on SQLite or PostgreSQL.

Modules: `db` (engine and tables), `migrate` (Alembic from code), `keys` (key store and lifecycle),
`key_cache` (the in-process key cache), `key_channels` (how key changes reach it),
`chain` (ledger rows and their hash chain), `spool` (the local file for database outages),
`ledger` (the batched writer, an `AuditSink`), `report` (tail, report, verify), `timespec`
(`90d`-style times), `runtime` (what `create_app` builds). docs/storage.md is the operator's guide.
"""
