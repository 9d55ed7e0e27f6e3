"""The redacting log-record factory (`gateway.observability.logs`): Python's logging has one factory
per process, so Sluice installs it once, and every app's secrets are redacted, not only the last
app's."""

from __future__ import annotations

import logging

import pytest

from gateway.observability.logs import REDACTED, RedactingFactory, install_redaction


def test_installed_once_and_every_apps_secrets_redacted(caplog: pytest.LogCaptureFixture) -> None:
    first, second = "first-app-deployment-secret", "second-app-deployment-secret"
    install_redaction([first])
    factory = logging.getLogRecordFactory()
    install_redaction([second])
    assert logging.getLogRecordFactory() is factory  # not stacked, not replaced
    assert isinstance(factory, RedactingFactory)
    with caplog.at_level(logging.INFO, logger="sluice.test"):
        logging.getLogger("sluice.test").info("keys %s and %s", first, second)
    (record,) = caplog.records
    assert record.getMessage() == f"keys {REDACTED} and {REDACTED}"
