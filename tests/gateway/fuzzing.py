"""Request generators and response checks shared by the fuzz test and `scripts/fuzz.py`.

What belongs here: Hypothesis strategies that build odd, malformed or hostile requests to the
gateway (`fuzz_requests()`), each carrying `CANARY` in a message and in an extra field, the
code that sends one through an httpx client (`send`), and `problems()`, which lists every way a
response broke the contract: a 5xx, an error body that is not exactly the OpenAI envelope (or is
FastAPI's `{"detail": ...}`), the canary in headers or an error body, or an upstream call made by
a request Sluice should have refused before routing. Nothing here starts an app or a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st

from tests.gateway.body_shapes import SHAPES

CANARY = "SLUICEFUZZCANARY4c9e1b7a"
DEMO_KEY = "sk-sluice-demo"
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
OPTIONAL_ERROR_KEYS = frozenset({"privacy"})
# Statuses that mean "refused before routing": no upstream may have been called for them.
VALIDATION_STATUSES = frozenset({400, 401, 404, 413, 415})
# A 400 Sluice relays after the upstream itself refused a request it passed on (not a validation miss).
UPSTREAM_REJECTED = "the upstream rejected"
MAX_BODY = 4 * 1024 * 1024
# Nesting the generators use inside fields Sluice passes upstream: below orjson's serialisation limit
# (see KNOWN_ISSUES). Dropped fields (`metadata`) and unparseable bodies go deeper.
PASSED_DEPTH = 200

MODELS = (
    "gpt-4o-mini",
    "claude-sonnet",
    "gemini-flash",
    "gemini-flash-free",
    "deepseek-chat",
    "llama-local",
)
EMBEDDING_MODEL = "text-embedding-3-small"
ODD_STRINGS = (
    "",
    " ",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "gpt-4o-mini/../claude-sonnet",
    "openai/gpt-4o-mini",
    "gpt-4o-mini\r\nX-Injected: 1",
    "gpt-4o-mini\x00",
    "GPT-4O-MINI",
    " gpt-4o-mini ",
    "\u202egpt-4o-mini",
    "gpt\u20114o\u2011mini",
    "模型",
    "🦙" * 40,
    "%s%s%n{0}{{}}",
    "${jndi:ldap://127.0.0.1/x}",
    "<script>alert(1)</script>",
    "\ud800",
)
POLICY_VALUES = (
    "zero-retention",
    "no-training-only",
    "api-channel-only",
    "no-training-only, zero-retention",
    ",,, ,",
    "no-such-policy",
    "../policies/secret",
    "a" * 300,
)
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/vnd.api+json",
    "application/json-patch+json",
    "text/plain",
    "text/json",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "",
    ";",
    "application/json;;;",
)
FORBIDDEN_SAMPLES = (
    "api_base",
    "base_url",
    "api_key",
    "extra_headers",
    "headers",
    "mock_response",
    "litellm_params",
    "litellm_logging_obj",
    "LITELLM_X",
    "success_callback",
    "aws_region_name",
    "vertex_project",
    "azure_ad_token",
    "langfuse_host",
    "timeout",
    "num_retries",
    "fallbacks",
    "Api_Base",
)
CHAT_FIELD_NAMES = (
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "top_logprobs",
    "logprobs",
    "stream",
    "stream_options",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "user",
    "logit_bias",
    "parallel_tool_calls",
    "store",
    "metadata",
    "functions",
    "function_call",
    "privacy",
    "provider",
)


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request; `kind` names the generator that made it."""

    kind: str
    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    content: bytes

    def describe(self, limit: int = 300) -> str:
        return (
            f"{self.kind} {self.method} {self.path[:limit]!r} headers={list(self.headers)!r} "
            f"body={self.content[:limit]!r}{'...' if len(self.content) > limit else ''}"
        )


@dataclass
class Outcome:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    upstream_calls: int = 0
    exception: str | None = None
    notes: list[str] = field(default_factory=list)


# -- values ---------------------------------------------------------------------------------------
def huge_ints() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(),
        st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**40)]),
    )


def numbers() -> st.SearchStrategy[Any]:
    return st.one_of(
        huge_ints(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, 0.5, 2.0000001, -2.5]),
        st.booleans(),
    )


def odd_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=40),
        st.integers(min_value=200, max_value=70_000).map(lambda n: "x" * n),
    )


def json_keys() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=12), st.sampled_from(FORBIDDEN_SAMPLES + CHAT_FIELD_NAMES))


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), huge_ints(), st.floats(), st.text(max_size=20))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(json_keys(), inner, max_size=4)),
        max_leaves=max_leaves,
    )


def anything() -> st.SearchStrategy[Any]:
    """Any value for a field: ordinary JSON, odd numbers and strings, or the canary itself."""
    return st.one_of(json_values(6), numbers(), odd_strings(), st.just(CANARY))


def deep(depth: int, leaf: Any) -> Any:
    """`leaf` under `depth` levels of alternating objects and arrays (the outermost an object when odd)."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def deep_text(depth: int, leaf: str) -> bytes:
    """JSON text of `deep(depth, leaf)`, written directly (stdlib json recurses and stops near 1000)."""
    opens = "".join('{"k":' if i % 2 == 0 else "[" for i in reversed(range(depth)))
    closes = "".join("}" if i % 2 == 0 else "]" for i in range(depth))
    return (opens + json.dumps(leaf) + closes).encode()


# -- chat bodies ----------------------------------------------------------------------------------
def canary_message() -> st.SearchStrategy[dict[str, Any]]:
    role = st.sampled_from(["user", "system", "developer", "assistant"])
    text = st.text(max_size=30).map(lambda t: f"{t} {CANARY} {t}")
    parts = text.map(lambda t: [{"type": "text", "text": t}])
    return st.builds(lambda r, c: {"role": r, "content": c}, role, st.one_of(text, parts))


def odd_message() -> st.SearchStrategy[Any]:
    return st.one_of(
        anything(),
        st.dictionaries(
            st.sampled_from(["role", "content", "name", "tool_calls", "x"]), anything(), max_size=4
        ),
        st.builds(lambda r: {"role": r, "content": CANARY}, odd_strings()),
        st.builds(lambda c: {"role": "user", "content": c}, anything()),
        st.builds(
            lambda k, v: {"role": "user", "content": CANARY, k: v},
            st.sampled_from(FORBIDDEN_SAMPLES),
            anything(),
        ),
        st.builds(lambda p: {"role": "user", "content": [p]}, anything()),
        st.builds(
            lambda calls: {"role": "assistant", "content": None, "tool_calls": calls},
            st.lists(anything(), max_size=2),
        ),
        st.builds(lambda v: {"role": "tool", "tool_call_id": v, "content": CANARY}, anything()),
    )


def messages() -> st.SearchStrategy[Any]:
    return st.one_of(
        canary_message().map(lambda m: [m]),
        st.builds(lambda m, rest: [m, *rest], canary_message(), st.lists(odd_message(), max_size=3)),
        st.builds(lambda rest, m: [*rest, m], st.lists(odd_message(), max_size=3), canary_message()),
        st.builds(lambda v: [v, {"role": "user", "content": CANARY}], anything()),
        st.just([]),
        st.just({"role": "user", "content": CANARY}),
        st.just(CANARY),
    )


def tools() -> st.SearchStrategy[Any]:
    schema = st.one_of(
        json_values(8),
        st.just({"type": "object", "properties": {"api_base": {"type": "string"}}}),
        st.just({"type": "object", "properties": {"litellm_x": {"$ref": "#/definitions/x"}}}),
        st.just(deep(PASSED_DEPTH, "leaf")),
    )
    name = st.one_of(st.sampled_from(["lookup", "get_weather"]), odd_strings())
    tool = st.builds(
        lambda n, s: {"type": "function", "function": {"name": n, "parameters": s}}, name, schema
    )
    return st.one_of(st.lists(st.one_of(tool, anything()), max_size=3), anything())


# Shapes a translation (litellm) refuses or would have to fetch (issue 11): each must be a 400 that
# counts against no deployment, or a 200 where the provider takes it; never a 5xx, never a fetch.
MISTAKEN_PARTS: tuple[Any, ...] = (
    {"type": "image_url", "image_url": {"url": "data:nonsense"}},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!not-base64!!"}},
    {"type": "image_url", "image_url": {"url": "https://images.example.com/cat.png"}},
    {"type": "image_url", "image_url": {"url": "http://images.example.com/cat"}},
    {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}},
    {"type": "image_url", "image_url": "https://images.example.com/cat.png"},
    {"type": "image_url", "image_url": {}},
    {"type": "file", "file": {"file_id": "https://docs.example.com/a.pdf"}},
    {"type": "file", "file": {"file_data": "data:nonsense"}},
    {"type": "input_audio", "input_audio": {"data": "!!", "format": "wav"}},
    {"type": "hologram", "hologram": {"note": CANARY}},
    {"type": "text"},
)
MISTAKEN_TOOLS: tuple[Any, ...] = (
    [{}],
    [{"type": "function"}],
    [{"type": "function", "function": {"name": "lookup", "parameters": CANARY}}],
    [{"type": "function", "function": {"name": "lookup", "parameters": [CANARY]}}],
    [{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse"}],
    [{"type": "web_search_preview"}],
    [{"type": CANARY}],
)


def client_mistake_bodies() -> st.SearchStrategy[dict[str, Any]]:
    model = st.sampled_from(["claude-sonnet", "gemini-flash", "gpt-4o-mini"])
    text = {"type": "text", "text": CANARY}
    shape = st.one_of(
        st.sampled_from(MISTAKEN_PARTS).map(lambda p: {"messages": [{"role": "user", "content": [text, p]}]}),
        st.sampled_from(MISTAKEN_TOOLS).map(
            lambda t: {"messages": [{"role": "user", "content": CANARY}], "tools": t}
        ),
        st.just({"messages": [{"role": "user", "content": CANARY}], "web_search_options": {}}),
        st.just({"messages": [{"role": "tool", "tool_call_id": "call_1", "content": CANARY}]}),
        st.just(
            {
                "messages": [
                    {"role": "user", "content": CANARY},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
                ]
            }
        ),
    )
    return st.builds(lambda m, b, stream: {"model": m, **b, "stream": stream}, model, shape, st.booleans())


def nested_forbidden() -> st.SearchStrategy[dict[str, Any]]:
    """A forbidden key somewhere below the top level (in an allowed field's value)."""
    return st.builds(
        lambda host, key, value: {host: {key: value}},
        st.sampled_from(
            ["response_format", "stream_options", "metadata", "provider", "privacy", "logit_bias"]
        ),
        st.sampled_from(FORBIDDEN_SAMPLES),
        st.one_of(st.just("http://127.0.0.1:9/steal"), anything()),
    )


def field_values() -> st.SearchStrategy[dict[str, Any]]:
    plain = st.dictionaries(st.sampled_from(CHAT_FIELD_NAMES), anything(), max_size=3)
    typed = st.fixed_dictionaries(
        {},
        optional={
            "temperature": numbers(),
            "max_tokens": numbers(),
            "n": numbers(),
            "seed": numbers(),
            "stream": st.one_of(st.booleans(), anything()),
            "stream_options": st.one_of(st.just({"include_usage": True}), anything()),
            "tools": tools(),
            "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), anything()),
            "response_format": st.one_of(
                st.just({"type": "json_object"}),
                st.builds(
                    lambda s: {"type": "json_schema", "json_schema": {"name": "x", "schema": s}},
                    json_values(8),
                ),
                anything(),
            ),
            "privacy": st.one_of(
                st.builds(lambda p: {"policy": p}, st.sampled_from(POLICY_VALUES)),
                st.builds(lambda v: {"on_violation": v}, anything()),
                anything(),
            ),
            "provider": st.one_of(
                st.just({"data_collection": "deny"}),
                st.just({"zdr": True}),
                st.dictionaries(st.sampled_from(["data_collection", "zdr", "order", "only"]), anything()),
            ),
        },
    )
    return st.one_of(plain, typed, nested_forbidden())


def canary_extra() -> st.SearchStrategy[dict[str, Any]]:
    """The canary in a field beside the messages: passed on, dropped, or refused."""
    return st.sampled_from(
        [
            {"user": CANARY},
            {"metadata": {"note": CANARY}},
            {"x_fuzz_note": CANARY},
            {"stop": [CANARY]},
            {"api_key": CANARY},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {CANARY: 1}}}},
        ]
    )


def chat_bodies() -> st.SearchStrategy[dict[str, Any]]:
    # Model names are identifiers Sluice echoes (truncated) in a 404, so the canary never goes there.
    model = mostly(
        MODELS[0], st.one_of(st.sampled_from(MODELS), odd_strings(), json_values(6), numbers()), 40
    )

    def build(
        m: Any, msgs: Any, fields: dict[str, Any], extra: dict[str, Any], drop: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": m, "messages": msgs, **fields, **extra}
        if drop is not None:
            body.pop(drop, None)
        return body

    drop = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(["model", "messages"]))
    return st.builds(build, model, messages(), field_values(), canary_extra(), drop)


def embedding_bodies() -> st.SearchStrategy[dict[str, Any]]:
    model = st.one_of(st.just(EMBEDDING_MODEL), st.sampled_from(MODELS), odd_strings())
    inputs = st.one_of(
        st.just(CANARY),
        st.just([CANARY, "second"]),
        st.just([[1, 2, 3], [4]]),
        st.builds(lambda v: [CANARY, v], anything()),
        anything(),
    )
    extra = st.fixed_dictionaries(
        {},
        optional={
            "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), anything()),
            "dimensions": numbers(),
            "user": st.just(CANARY),
            "x_fuzz_note": st.just(CANARY),
        },
    )
    return st.builds(lambda m, i, e: {"model": m, "input": i, **e}, model, inputs, extra)


# -- encodings, headers, paths ---------------------------------------------------------------------
def encode(value: Any, style: int) -> bytes:
    """JSON text of `value`, with stdlib json (big ints, NaN, lone surrogates survive as written)."""
    text = json.dumps(value, ensure_ascii=bool(style % 2), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def headers() -> st.SearchStrategy[tuple[tuple[bytes, bytes], ...]]:
    odd_auth = st.one_of(
        st.just([(b"authorization", f"bearer   {DEMO_KEY}  ".encode())]),
        st.just([(b"api-key", DEMO_KEY.encode())]),
        st.just([(b"authorization", f"Bearer {DEMO_KEY}".encode()), (b"x-api-key", b"sk-other")]),
        st.just([(b"authorization", f"Basic {DEMO_KEY}".encode())]),
        st.just([(b"authorization", b"Bearer ")]),
        st.just([(b"authorization", b"Bearer sk-sluice-demo\xff")]),
        st.just([(b"authorization", b"Bearer " + b"k" * 600)]),
        st.just([]),
        st.builds(lambda v: [(b"authorization", b"Bearer " + v)], header_bytes()),
    )
    valid_auth = [(b"authorization", f"Bearer {DEMO_KEY}".encode())]
    auth = mostly(valid_auth, odd_auth)
    content_type = mostly(
        [(b"content-type", b"application/json")],
        st.one_of(
            st.none(),
            st.sampled_from(CONTENT_TYPES).map(lambda t: [(b"content-type", t.encode())]),
            header_bytes().map(lambda v: [(b"content-type", v)]),
        ),
    )
    policy = mostly(
        None,
        st.one_of(
            st.sampled_from(POLICY_VALUES).map(lambda v: [(b"x-privacy-policy", v.encode())]),
            header_bytes().map(lambda v: [(b"x-privacy-policy", v)]),
        ),
    )
    other = mostly(
        None,
        st.one_of(
            st.just([(b"content-length", b"abc")]),
            st.just([(b"content-length", b"99999999999")]),
            st.just([(b"content-encoding", b"gzip")]),
            st.just([(b"x-request-id", b"../../x")]),
            # The shapes of issue 11: encodings, repeated lines of list and one-value headers, an
            # Upgrade handshake, ambiguous framing headers.
            st.sampled_from([b"br", b"identity", b"identity, gzip", b"x-unknown"]).map(
                lambda v: [(b"content-encoding", v)]
            ),
            st.just([(b"content-encoding", b"identity"), (b"content-encoding", b"deflate")]),
            st.just([(b"content-type", b"application/json"), (b"content-type", b"text/plain")]),
            st.just([(b"x-privacy-policy", b"api-channel-only"), (b"x-privacy-policy", b"zero-retention")]),
            st.just([(b"connection", b"Upgrade"), (b"upgrade", b"websocket"), (b"cookie", CANARY.encode())]),
            st.just([(b"transfer-encoding", b"identity, chunked")]),
        ),
        85,
    )

    def join(*groups: list[tuple[bytes, bytes]] | None) -> tuple[tuple[bytes, bytes], ...]:
        return tuple(pair for group in groups if group for pair in group)

    return st.builds(join, auth, content_type, policy, other)


def mostly(usual: Any, odd: st.SearchStrategy[Any], percent: int = 75) -> st.SearchStrategy[Any]:
    """`usual` about `percent`% of the time, else a draw from `odd` (so most requests pass auth)."""
    return st.integers(0, 99).flatmap(lambda n: st.just(usual) if n < percent else odd)


def header_bytes() -> st.SearchStrategy[bytes]:
    """Header values a server could pass on: no CR, LF or NUL, anything else (latin-1, UTF-8 bytes)."""
    return st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in (0, 10, 13)))


def endpoint() -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.just(("POST", "/v1/chat/completions")),
        st.just(("POST", "/v1/chat/completions")),
        st.just(("POST", "/v1/chat/completions")),
        st.just(("POST", "/v1/embeddings")),
        st.sampled_from(
            [
                ("GET", "/v1/chat/completions"),
                ("PUT", "/v1/chat/completions"),
                ("POST", "/v1/chat/completions/"),
                ("POST", "/v1//chat/completions"),
                ("POST", "/v1/chat/../chat/completions"),
                ("POST", "/V1/CHAT/COMPLETIONS"),
                ("POST", "/v1/completions"),
                ("POST", "/v1/models"),
                ("GET", "/v1/models"),
                ("POST", "/admin/keys"),
                ("GET", "/admin/keys/anything"),
                ("PUT", "/admin/keys"),
                ("GET", "/admin"),
                ("DELETE", "/v1/embeddings"),
            ]
        ),
        st.builds(lambda m: ("GET", "/v1/models/" + url_part(m)), odd_strings()),
    )


def url_part(text: str) -> str:
    """`text` as a path segment httpx will send (percent-encoded, `/` and `.` kept, at most 4000 chars)."""
    return quote(text[:4000], safe="/.%", errors="surrogatepass")


def _request(
    kind: str, where: tuple[str, str], head: tuple[tuple[bytes, bytes], ...], content: bytes
) -> FuzzRequest:
    return FuzzRequest(kind, where[0], where[1], head, content)


def _json_request(
    kind: str, bodies: st.SearchStrategy[Any], where: st.SearchStrategy[tuple[str, str]]
) -> st.SearchStrategy[FuzzRequest]:
    return st.builds(
        lambda w, h, b, style: _request(kind, w, h, encode(b, style)),
        where,
        headers(),
        bodies,
        st.integers(0, 1),
    )


def arbitrary_requests() -> st.SearchStrategy[FuzzRequest]:
    """Any JSON value as the whole body, with the canary inside it."""
    wrapped = st.one_of(
        st.builds(lambda d: {**d, "note": CANARY}, st.dictionaries(json_keys(), json_values(), max_size=6)),
        st.builds(lambda v: [v, CANARY], json_values()),
        st.builds(lambda v: {"messages": [{"role": "user", "content": CANARY}], "model": v}, json_values()),
        st.builds(lambda t: f"{t}{CANARY}", st.text(max_size=20)),
    )
    return _json_request("arbitrary-json", wrapped, endpoint())


def chat_requests() -> st.SearchStrategy[FuzzRequest]:
    return _json_request("chat", chat_bodies(), st.just(("POST", "/v1/chat/completions")))


def client_mistake_requests() -> st.SearchStrategy[FuzzRequest]:
    return _json_request("client-mistake", client_mistake_bodies(), st.just(("POST", "/v1/chat/completions")))


def embedding_requests() -> st.SearchStrategy[FuzzRequest]:
    return _json_request("embeddings", embedding_bodies(), st.just(("POST", "/v1/embeddings")))


def schema_format(schema: bytes) -> bytes:
    return b'{"type":"json_schema","json_schema":{"name":"x","schema":' + schema + b"}}"


def raw_bodies() -> st.SearchStrategy[bytes]:
    valid = encode({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY}]}, 0)
    return st.one_of(
        st.binary(max_size=64).map(lambda b: CANARY.encode() + b),
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n] + CANARY.encode()[: max(0, 8 - n)]),
        st.binary(min_size=1, max_size=8).map(lambda b: valid.replace(b"Hello", b) + b"\xff\xfe"),
        st.just(valid.replace(CANARY.encode(), CANARY.encode() + b"\xc3\x28")),
        st.just(valid.replace(CANARY.encode(), CANARY.encode() + b"\\ud800")),
        st.just(valid[:-1] + b',"model":"claude-sonnet"}'),
        st.just(valid[:-1] + b',"temperature":NaN}'),
        st.just(valid[:-1] + b',"seed":1e999}'),
        st.just(valid[:-1] + b',"n":123456789012345678901234567890}'),
        st.just(b"\xef\xbb\xbf" + valid),
        st.just(b"\x00" + valid),
        st.just(b"  \n\t "),
        st.just(b""),
        st.sampled_from([100, 400, 490, 600, 1100]).map(
            lambda d: valid[:-1] + b',"metadata":' + b"[" * d + b"]" * d + b"}"
        ),
        st.sampled_from([2, 50, PASSED_DEPTH]).map(
            lambda d: valid[:-1] + b',"response_format":' + schema_format(deep_text(d, CANARY)) + b"}"
        ),
        st.sampled_from([101, 600, 1025, 1100]).map(
            lambda d: valid[:-1] + b',"response_format":' + deep_text(d, CANARY) + b"}"
        ),
        st.sampled_from([MAX_BODY - 200, MAX_BODY + 1]).map(
            lambda n: valid[:-2] + b" " + b"x" * (n - len(valid)) + b'"}]}'
        ),
        # The costliest shapes at the size cap (issue 11): nesting, width, parts, keys, strings.
        st.sampled_from(SHAPES).map(lambda s: s.build(MAX_BODY)),
    )


def raw_requests() -> st.SearchStrategy[FuzzRequest]:
    return st.builds(
        lambda w, h, c: _request("raw-bytes", w, h, c),
        st.one_of(st.just(("POST", "/v1/chat/completions")), endpoint()),
        headers(),
        raw_bodies(),
    )


def fuzz_requests() -> st.SearchStrategy[FuzzRequest]:
    """Every generator, mixed; chat bodies weighted up (the endpoint with the most surface)."""
    return st.one_of(
        chat_requests(),
        chat_requests(),
        arbitrary_requests(),
        embedding_requests(),
        raw_requests(),
        client_mistake_requests(),
    )


# -- sending and judging -----------------------------------------------------------------------------
async def send(
    http: httpx.AsyncClient, request: FuzzRequest, upstream_count: Callable[[], int] | None = None
) -> Outcome:
    """Send `request`; with `upstream_count` (a callable), count the upstream calls it caused."""
    before = upstream_count() if upstream_count is not None else 0
    try:
        response = await http.request(
            request.method, request.path, headers=list(request.headers), content=request.content
        )
    except Exception as exc:  # the transport raised: the app crashed instead of answering
        return Outcome(599, [], b"", exception=f"{type(exc).__name__}: {str(exc)[:200]}")
    calls = upstream_count() - before if upstream_count is not None else 0
    return Outcome(response.status_code, list(response.headers.multi_items()), response.content, calls)


def envelope_problem(outcome: Outcome) -> str | None:
    """Why an error response is not exactly `{"error": {message, type, param, code[, privacy]}}`."""
    try:
        body = json.loads(outcome.body)
    except ValueError:
        return "error body is not JSON"
    if not isinstance(body, dict):
        return "error body is not an object"
    if "detail" in body:
        return "FastAPI 'detail' body"
    if set(body) != {"error"} or not isinstance(body["error"], dict):
        return f"top-level keys {sorted(body)}"
    keys = set(body["error"])
    if not keys >= ENVELOPE_KEYS or keys - ENVELOPE_KEYS - OPTIONAL_ERROR_KEYS:
        return f"error keys {sorted(keys)}"
    error = body["error"]
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        return "message/type not strings"
    if error["param"] is not None and not isinstance(error["param"], str):
        return "param neither null nor a string"
    return None


def upstream_rejected(outcome: Outcome) -> bool:
    try:
        message = json.loads(outcome.body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(message, str) and message.startswith(UPSTREAM_REJECTED)


def problems(outcome: Outcome) -> list[str]:
    """Every contract the response broke, as short labels (empty when it behaved)."""
    found: list[str] = []
    if outcome.exception is not None:
        found.append(f"exception: {outcome.exception}")
    if outcome.status >= 500:
        found.append(f"5xx: {outcome.status}")
    if any(CANARY in f"{name}: {value}" for name, value in outcome.headers):
        found.append("canary in headers")
    if outcome.status >= 400 and outcome.exception is None:
        problem = envelope_problem(outcome)
        if problem is not None:
            found.append(f"non-envelope: {problem}")
        if CANARY.encode() in outcome.body:
            found.append("canary in error body")
    if outcome.status in VALIDATION_STATUSES and outcome.upstream_calls and not upstream_rejected(outcome):
        found.append(f"upstream called by an invalid request ({outcome.upstream_calls})")
    return found


# -- known issues ---------------------------------------------------------------------------------
def known_issues() -> list[FuzzRequest]:
    """Requests that used to get a 5xx (docs/reliability.md): a body orjson parses (up to 1024 levels)
    but could not serialise again for the upstream (more than ~254 levels) in a passed-on field.
    Sluice now refuses bodies nested deeper than 64 levels with a 400."""
    head = ((b"authorization", f"Bearer {DEMO_KEY}".encode()), (b"content-type", b"application/json"))
    base = encode({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY}]}, 0)
    schema = schema_format(deep_text(300, CANARY))
    tools = b'[{"type":"function","function":{"name":"f","parameters":' + deep_text(301, "x") + b"}}]"
    return [
        FuzzRequest(
            "known-deep-schema",
            "POST",
            "/v1/chat/completions",
            head,
            base[:-1] + b',"response_format":' + schema + b"}",
        ),
        FuzzRequest(
            "known-deep-tools", "POST", "/v1/chat/completions", head, base[:-1] + b',"tools":' + tools + b"}"
        ),
    ]
