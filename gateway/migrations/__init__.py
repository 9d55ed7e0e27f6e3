"""Alembic migrations of Sluice's schema (package data; run through `gateway.storage.migrate`)."""
