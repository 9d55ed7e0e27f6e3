"""Egress: nothing leaves the process except to the configured deployments' hosts.

A fresh interpreter (so litellm's import-time behaviour is observed, not hidden by an earlier import
in the test process) installs a socket-level recorder before importing anything of Sluice or
litellm, builds the app with `create_app` on a config whose deployments (OpenAI wire, Anthropic and
Gemini through litellm) are simulated against a fake upstream in another process on 127.0.0.1, runs
full request cycles, and prints every destination it saw. The recorder also refuses non-loopback
destinations, so a regression fails the test instead of reaching the internet.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.support import read_line_matching, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, socket, sys

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
seen = {"lookups": [], "connects": [], "datagrams": [], "refused": []}
_getaddrinfo, _connect, _connect_ex, _sendto = (
    socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
)
_create_connection = socket.create_connection


def _name(host):
    return host.decode() if isinstance(host, bytes) else host


def _inet(address):
    return isinstance(address, tuple) and len(address) >= 2


def getaddrinfo(host, port, *args, **kwargs):
    seen["lookups"].append([_name(host), port])
    if host is not None and _name(host) not in LOOPBACK:
        seen["refused"].append(["lookup", _name(host)])
        raise socket.gaierror(socket.EAI_NONAME, "egress recorder: lookup refused")
    return _getaddrinfo(host, port, *args, **kwargs)


def _check(kind, address):
    if _inet(address):
        seen[kind].append([_name(address[0]), address[1]])
        if _name(address[0]) not in LOOPBACK:
            seen["refused"].append([kind, _name(address[0])])
            raise OSError("egress recorder: connection refused")


def connect(self, address):
    _check("connects", address)
    return _connect(self, address)


def connect_ex(self, address):
    _check("connects", address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    _check("datagrams", args[-1])
    return _sendto(self, data, *args)


def create_connection(address, *args, **kwargs):
    _check("connects", address)
    return _create_connection(address, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.socket.sendto = sendto
socket.create_connection = create_connection

# Only now: Sluice (and, through it, litellm).
import asyncio
import httpx
from gateway.app import create_app
from gateway.observability.audit import MemoryAuditSink
from gateway.config import parse_config
from gateway.settings import Settings

FAKE_URL = sys.argv[1]
CONFIG = """
server: {default_policy: no-training-only, on_violation: block}
models:
  - name: gpt
    deployments:
      - {provider: openai, channel: openai.api, model: openai/gpt-4o-mini, simulate: true}
  - name: claude
    deployments:
      - {provider: anthropic, channel: anthropic.api, model: anthropic/claude-sonnet-4-5, simulate: true}
  - name: gemini
    deployments:
      - {provider: google, channel: google.gemini_api_paid, model: gemini/gemini-2.5-flash, simulate: true}
  - name: embed
    deployments:
      - {provider: openai, channel: openai.api, model: openai/text-embedding-3-small, simulate: true}
attestations:
  - {provider: google, channel: google.gemini_api_paid, fact: paid_tier, evidence: "egress test"}
keys:
  - {name: egress, key_hash: "sha256:1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213"}
"""


async def main():
    settings = Settings(allow_simulate=True, fake_upstream_url=FAKE_URL)
    app = create_app(settings, config=parse_config(CONFIG), audit=MemoryAuditSink())
    statuses = []
    auth = {"authorization": "Bearer sk-sluice-demo"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=60) as http:
            for model in ("gpt", "claude", "gemini"):
                for stream in (False, True):
                    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                    response = await http.post("/v1/chat/completions", json=body, headers=auth)
                    complete = "[DONE]" in response.text if stream else bool(response.json().get("choices"))
                    statuses.append([model, stream, response.status_code, complete])
            response = await http.post("/v1/embeddings", json={"model": "embed", "input": "hi"}, headers=auth)
            statuses.append(["embed", False, response.status_code, True])
            # Failure paths load code of their own in litellm (its error mapping, token counting
            # with a local tokenizer after a broken stream): they must not reach out either.
            faults = []
            for model in ("gpt", "claude", "gemini"):
                for marker, stream in (
                    ("[[fake:reset_after=2]]", True),
                    ("[[fake:error_after=2]]", True),
                    ("[[fake:status=500]]", False),
                    ("[[fake:status=429,retry_after=1]]", False),
                ):
                    messages = [{"role": "user", "content": marker}]
                    body = {"model": model, "stream": stream, "messages": messages}
                    response = await http.post("/v1/chat/completions", json=body, headers=auth)
                    faults.append([model, marker, response.status_code])
    print("EGRESS " + json.dumps({**seen, "statuses": statuses, "faults": faults}), flush=True)


asyncio.run(main())
'''


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment without litellm/Sluice switches, so the gateway's own offline settings are tested."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LITELLM", "SLUICE_", "DISABLE_AIOHTTP"))
        and k not in ("HTTP_PROXY", "HTTPS_PROXY")
    }
    return env | {
        "PYTHONPATH": str(REPO_ROOT),
        "SLUICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'egress.db'}",
        "SLUICE_AUDIT_SPOOL": str(tmp_path / "egress.spool"),
    }


@pytest.fixture
def fake_process(tmp_path: Path) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluice_fakes.fake_upstream",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--quiet",
        ],
        cwd=REPO_ROOT,
        env=_clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = read_line_matching(proc.stdout, "listening on")
        url = line.strip().rsplit(" ", 1)[-1]
        yield url, int(url.rsplit(":", 1)[-1])
    finally:
        stop_process(proc)


@pytest.mark.e2e
def test_only_the_fake_upstream_is_contacted(fake_process: tuple[str, int], tmp_path: Path) -> None:
    url, port = fake_process
    script = tmp_path / "egress_child.py"
    script.write_text(CHILD, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), url],
        cwd=REPO_ROOT,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("EGRESS ")]
    seen = json.loads(line[len("EGRESS ") :])

    # The cycle really ran through every path (otherwise "no egress" would prove nothing).
    assert [s[2] for s in seen["statuses"]] == [200] * 7, seen["statuses"]
    assert all(s[3] for s in seen["statuses"]), seen["statuses"]
    assert len(seen["faults"]) == 12 and all(f[2] in (200, 429, 502) for f in seen["faults"]), seen["faults"]

    assert seen["refused"] == [], seen["refused"]
    destinations = {(host, p) for host, p in seen["connects"]}
    assert destinations == {("127.0.0.1", port)}, destinations
    assert seen["datagrams"] == []
    lookups = {host for host, _ in seen["lookups"] if host is not None}
    assert lookups <= {"127.0.0.1", "localhost"}, lookups

    # And the fake saw all three wire formats.
    recorded = httpx.get(f"{url}/_fake/requests", timeout=10).json()
    assert {r["wire"] for r in recorded} == {"openai", "anthropic", "gemini"}


def test_guard_refuses_non_loopback_in_this_process() -> None:
    """The in-process guard (tests/gateway/conftest.py) turns a stray lookup into an error."""
    with pytest.raises(OSError, match="loopback only"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(OSError, match="loopback only"), socket.socket() as sock:
        sock.connect(("93.184.215.14", 443))


MEDIA_CHILD_MAIN = r"""
FAKE_URL, TRAP_PORT = sys.argv[1], int(sys.argv[2])
PUBLIC = "https://images.sluice-egress-probe.com/cat.png"
URLS = {
    "public-https": PUBLIC,
    "public-no-extension": "https://images.sluice-egress-probe.com/photo",
    "trap-http": f"http://127.0.0.1:{TRAP_PORT}/cat.png",
    "trap-https": f"https://127.0.0.1:{TRAP_PORT}/cat.png",
}
PARTS = {name: {"type": "image_url", "image_url": {"url": url}} for name, url in URLS.items()}
PARTS["file-url"] = {"type": "file", "file": {"file_id": PUBLIC.replace(".png", ".pdf")}}
PARTS["image-url-string"] = {"type": "image_url", "image_url": URLS["trap-http"]}


async def main():
    settings = Settings(allow_simulate=True, fake_upstream_url=FAKE_URL)
    app = create_app(settings, config=parse_config(CONFIG), audit=MemoryAuditSink())
    statuses = []
    auth = {"authorization": "Bearer sk-sluice-demo"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice.test", timeout=60) as http:
            for model in ("gpt", "claude", "gemini"):
                for name, part in PARTS.items():
                    for stream in (False, True):
                        content = [{"type": "text", "text": "what is this?"}, part]
                        messages = [{"role": "user", "content": content}]
                        body = {"model": model, "stream": stream, "messages": messages}
                        response = await http.post("/v1/chat/completions", json=body, headers=auth)
                        code = response.json()["error"]["code"] if response.status_code >= 400 else None
                        statuses.append([model, name, stream, response.status_code, code])
    print("EGRESS " + json.dumps({**seen, "statuses": statuses}), flush=True)


asyncio.run(main())
"""


def media_child() -> str:
    """The recorder, imports and config of CHILD, then a run that sends media URLs."""
    return CHILD.split("\nasync def main():", 1)[0] + MEDIA_CHILD_MAIN


@pytest.mark.e2e
def test_media_urls_a_client_sends_are_never_fetched(fake_process: tuple[str, int], tmp_path: Path) -> None:
    """DESIGN.md invariant 2: an image or file URL goes to a provider that fetches it itself
    (Anthropic, `https`; the pass-through), or the client gets a 400 asking for inline data; the
    gateway never looks the host up or connects to it (a public-looking name, and a trap listener
    on 127.0.0.1 that must see no connection)."""
    url, port = fake_process
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(16)
        trap.setblocking(False)
        trap_port = trap.getsockname()[1]
        script = tmp_path / "egress_media_child.py"
        script.write_text(media_child(), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script), url, str(trap_port)],
            cwd=REPO_ROOT,
            env=_clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        with pytest.raises(BlockingIOError):
            trap.accept()  # nothing connected to the trap, not even briefly

    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("EGRESS ")]
    seen = json.loads(line[len("EGRESS ") :])
    assert seen["refused"] == [], seen["refused"]
    assert {(host, p) for host, p in seen["connects"]} == {("127.0.0.1", port)}
    assert {host for host, _ in seen["lookups"] if host is not None} <= {"127.0.0.1", "localhost"}

    outcome = {(m, name, stream): (status, code) for m, name, stream, status, code in seen["statuses"]}
    carried = {("claude", "public-https"), ("claude", "public-no-extension"), ("claude", "trap-https")}
    for (model, name, stream), (status, code) in outcome.items():
        if model == "gpt" or (model, name) in carried:  # the provider fetches (the fake does not)
            assert status == 200, (model, name, stream, status, code)
        else:
            assert (status, code) == (400, "invalid_value"), (model, name, stream, status, code)

    # Anthropic got the URL itself, as a URL source: nothing was inlined on the way.
    recorded = httpx.get(f"{url}/_fake/requests", timeout=10).json()
    anthropic = [r for r in recorded if r["wire"] == "anthropic"]
    sources = [
        part.get("source")
        for r in anthropic
        for message in (r.get("json") or {}).get("messages", [])
        for part in (message.get("content") if isinstance(message.get("content"), list) else [])
        if isinstance(part, dict) and part.get("type") == "image"
    ]
    assert {"type": "url", "url": "https://images.sluice-egress-probe.com/cat.png"} in sources, sources
    assert all(s.get("type") == "url" for s in sources), sources
