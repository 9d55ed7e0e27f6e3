"""Sluice's pure core: logic with no I/O, no framework and no global state (e.g. `sensitive`)."""
