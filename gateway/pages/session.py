"""Signing in to `/admin/report` from a browser with the master key, safely.

What belongs here: `PageSessions`, one per app (built by `gateway.api.pages.Pages`). A sign-in posts
the master key in a form (never in a URL); it is compared in constant time and answered with a
session cookie that holds no key: `<nonce>.<expiry>.<HMAC>` signed with a key derived from the
master key, so every worker and replica that shares the master key accepts it, and changing the
master key ends every session. The cookie is HttpOnly, SameSite=Strict, Secure over https, and
expires (`SLUICE_PAGES_SESSION_HOURS`). Signing out needs the session's CSRF token (an HMAC of its
nonce) and ends the session in this app at once (the browser drops the cookie everywhere); the
handlers also refuse cross-site form posts (`Sec-Fetch-Site`, `Origin`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "sluice_session"
MAX_ENDED = 10_000  # signed-out sessions remembered until they expire; the oldest go first past this


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    csrf: str


class PageSessions:
    def __init__(self, master_key: str | None, *, ttl_seconds: float, clock: Callable[[], float] = time.time):
        self._master = hashlib.sha256(master_key.encode()).digest() if master_key else None
        self._key = (
            hmac.new(master_key.encode(), b"sluice pages session v1", hashlib.sha256).digest()
            if master_key
            else b""
        )
        self._ttl = int(ttl_seconds)
        self._clock = clock
        self._ended: dict[str, int] = {}  # nonce -> expiry, for sessions signed out before expiring

    @property
    def enabled(self) -> bool:
        """Whether anyone can sign in: only with a master key configured."""
        return self._master is not None

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def sign_in(self, offered: str) -> str | None:
        """A new session token for the master key, else None (compared in constant time)."""
        if self._master is None:
            return None
        if not hmac.compare_digest(hashlib.sha256(offered.encode()).digest(), self._master):
            return None
        nonce = secrets.token_urlsafe(18)
        body = f"{nonce}.{int(self._clock()) + self._ttl}"
        return f"{body}.{self._sign(body)}"

    def check(self, token: str | None) -> Session | None:
        """The session `token` opens, if it is ours, unexpired and not signed out."""
        if self._master is None or not token or len(token) > 200:
            return None
        nonce, _, rest = token.partition(".")
        expires, _, signature = rest.partition(".")
        if not expires.isdigit() or not hmac.compare_digest(self._sign(f"{nonce}.{expires}"), signature):
            return None
        if int(expires) <= self._clock() or nonce in self._ended:
            return None
        return Session(nonce, int(expires), self._sign(f"csrf.{nonce}")[:32])

    def sign_out(self, session: Session) -> None:
        now = self._clock()
        self._ended = {n: e for n, e in self._ended.items() if e > now}
        while len(self._ended) >= MAX_ENDED:
            del self._ended[next(iter(self._ended))]
        self._ended[session.nonce] = session.expires
