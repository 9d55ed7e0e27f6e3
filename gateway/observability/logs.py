"""Log hygiene: secrets never reach a log line, whoever logs it.

What belongs here: a log-record factory that redacts the deployment credentials Sluice holds,
bearer tokens, the whole value of credential headers (`Authorization: Basic ...`, cookies, API-key
headers), `key=` query parameters, `sk-...`-shaped keys and SHA-256 digests (a stored key is one)
from every record at creation, whichever library logged it (httpx logs request URLs, and some
providers put keys in the query). Message content, header values and key material are never logged
by Sluice in the first place; this is the second line of defence. Records of litellm's loggers are
withheld whole (message, arguments, traceback): at DEBUG litellm logs every prompt and completion
(the request as a curl command, the raw response), and Sluice never needs its text. Sluice sets
those loggers to CRITICAL and detaches them; withholding also holds when an operator or a plugin
turns litellm's debugging back on. aiosqlite's records are withheld too: at DEBUG it logs every
statement with its parameters (key hashes, ledger rows).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

# Headers whose whole value is a credential: (proxy-)authorization, cookies, API-key headers.
CREDENTIAL_HEADERS = r"(?:authorization|cookie|set-cookie|x-api-key|api-key|x-goog-api-key|x-auth-token)"
PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(r"(?i)([?&](?:key|api_key|api-key|access_token|token)=)[^&\s'\"]+"),
    # `Authorization: Basic abc`, `"cookie": "a=b; c=d"`, `(b'authorization', b'Basic abc')`: the
    # value up to the end of the line or its closing quote, every word of it.
    re.compile(rf"(?i)({CREDENTIAL_HEADERS}['\"]?\s*(?:[:=]|,)\s*(?:b?['\"])?)[^\r\n'\"]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)()\b(?:sha256:)?[0-9a-f]{64}\b"),
)
REDACTED = "[redacted]"
# Loggers whose records may carry request or response content: litellm's ("LiteLLM",
# "LiteLLM Proxy", "LiteLLM Router", "litellm.*" and their children).
# aiosqlite's (every statement with its parameters).
WITHHELD_LOGGERS = ("litellm", "aiosqlite")


def _withheld(name: str) -> bool:
    root = name.split(".", 1)[0].split(" ", 1)[0].lower()
    return root in WITHHELD_LOGGERS


def withhold(record: logging.LogRecord) -> None:
    """Keep where a record came from and its level; drop everything it says."""
    record.msg = (
        f"{record.name} log record withheld (it may carry request content): {record.filename}:{record.lineno}"
    )
    record.args = None
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text


class RedactingFactory:
    """The process's log-record factory while Sluice runs: redacts every record at creation.

    Python's logging has one record factory per process, so this is a process-wide hook by nature,
    the only one Sluice installs: `install_redaction` installs it once (idempotently) and each app
    adds the secrets it holds; a secret is redacted whichever app's request logged it.
    """

    def __init__(self, base: Callable[..., logging.LogRecord]) -> None:
        self.base = base  # the factory installed before: records are built by it, then cleaned
        self.redact = Redactor()

    def add(self, secrets: Iterable[str]) -> None:
        self.redact = Redactor((*self.redact.secrets, *secrets))

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        if _withheld(record.name):
            withhold(record)
            return record
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        cleaned = self.redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return record


def install_redaction(secrets: Iterable[str]) -> None:
    """Redact every log record at creation, `secrets` included.

    Process-wide: the first call installs `RedactingFactory` over whatever factory was there; later
    calls (another app in the same process) only add their secrets to it.
    """
    current = logging.getLogRecordFactory()
    if not isinstance(current, RedactingFactory):
        current = RedactingFactory(current)
        logging.setLogRecordFactory(current)
    current.add(secrets)
