"""What Sluice tells its operators: metrics, logs and the audit record of every request.

What belongs here: `audit` (the metadata-only record and its sink), `metrics` (`GET /metrics`, on
prometheus_client, one registry per app) and `logs` (redaction of secrets from every log line).
"""
