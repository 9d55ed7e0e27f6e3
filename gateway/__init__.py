"""Sluice's gateway: the OpenAI-compatible service that enforces privacy routing.

Everything stateful is built by `gateway.app.create_app(settings)`; nothing here runs at import.
"""
