"""The `sluice` command line: serve, demo, check, catalog, policy, keys (and audit, db)."""
