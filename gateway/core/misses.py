"""Helpful misses: what Sluice suggests when a client names a path or a model it does not serve.

What belongs here: the list of endpoints a 404 names (only the public API: never `/admin` or
`/metrics`, which the app keeps out of sight), the likely meant endpoint (the same path under
`/v1`, chat completions for the legacy completions API, or the closest served path), and the
closest model aliases, always chosen among the names the caller's key may use. Nothing here echoes
what the client sent.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute, Route

PUBLIC = ("/v1/", "/healthz", "/readyz")
MAX_NAME = 128
CHAT = "/v1/chat/completions"
# Paths of OpenAI's API that Sluice does not serve, and what to use instead.
INSTEAD = {
    "/v1/completions": CHAT,  # the legacy completions API
    "/v1/engines": "/v1/models",
}


def served(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every public endpoint, in the app's order."""
    found: list[tuple[str, str]] = []
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith(PUBLIC):
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path.replace(":path}", "}")))
    return found


def _meant(path: str, paths: Sequence[str]) -> str | None:
    path = "/" + path[:MAX_NAME].strip("/")
    if path in INSTEAD:
        return INSTEAD[path]
    if not path.startswith("/v1/") and "/v1" + path in paths:
        return "/v1" + path  # a base URL without /v1
    if path.startswith("/v1/v1/") and path[3:] in paths:
        return path[3:]  # /v1 twice: a base URL with /v1, and a path with it too
    close = difflib.get_close_matches(path, paths, n=1, cutoff=0.7)
    return close[0] if close else None


def endpoint_hint(method: str, path: str, endpoints: Sequence[tuple[str, str]]) -> str:
    """`did you mean ...?` (when something is close) and the endpoints Sluice serves."""
    paths = [p for _, p in endpoints]
    meant = _meant(path, paths)
    hint = ""
    if meant is not None:
        methods = [m for m, p in endpoints if p == meant]
        shown = method if method in methods else (methods[0] if methods else method)
        hint = f"did you mean {shown} {meant}?"
        if meant == "/v1" + "/" + path.strip("/"):
            hint += " (a client's base URL ends in /v1, e.g. http://127.0.0.1:8080/v1)"
        elif path.strip("/") == "v1/completions":
            hint += " (Sluice serves the Chat Completions API, not the legacy Completions API)"
        hint += " "
    listed = ", ".join(f"{m} {p}" for m, p in endpoints)
    return f"{hint}Sluice serves: {listed}"


def closest_models(name: str, allowed: Iterable[str]) -> str:
    """`; did you mean 'a' or 'b'?` among `allowed` (the aliases the key may use), or ''."""
    names, word = list(allowed), name[:MAX_NAME]  # bounded: matching costs length x length
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if not close:
        lowered = word.lower()
        close = [a for a in names if lowered and (lowered in a.lower() or a.lower() in lowered)][:3]
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
