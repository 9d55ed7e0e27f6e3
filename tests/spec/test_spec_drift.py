"""The field table (`gateway/api/fields.py`) classifies every field the vendored specifications define.

When a refresh of `tests/spec/*.json` (`scripts/refresh_spec.py`) brings a new field, these tests
name it; classify it in the table (passed, data path or refused with a reason). A field a table lists
that the specification no longer defines is named too, so the table does not keep dead entries.
"""

from __future__ import annotations

import pytest

from gateway.api.fields import TABLES, Api, Disposition, accepted_paths
from gateway.api.openai_protocol import LITELLM_ONLY, _is_forbidden
from tests.spec.specs import property_paths

SCHEMAS = {
    Api.CHAT: ("chat",),
    Api.EMBEDDINGS: ("embeddings",),
    Api.RESPONSES: ("responses",),
    Api.MESSAGES: ("messages", "count_tokens"),
}
# Object keys the runtime checks one by one: every key the specification defines there is listed.
CHECKED_KEYS = {Api.CHAT: ("messages[]",)}


def _spec_paths(api: Api) -> frozenset[str]:
    return frozenset().union(*(property_paths(schema) for schema in SCHEMAS[api]))


def _last_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].removesuffix("[]")


def _classified(api: Api, path: str) -> bool:
    table = TABLES[api]
    return path in table or any(
        name.startswith("**.") and (path == name[3:] or path.endswith(name[2:])) for name in table
    )


@pytest.mark.parametrize("api", list(Api))
def test_every_top_level_field_is_classified(api: Api) -> None:
    defined = {path for path in _spec_paths(api) if "." not in path and "[" not in path}
    missing = sorted(defined - TABLES[api].keys())
    assert not missing, f"{api}: the specification defines fields the table does not classify: {missing}"


@pytest.mark.parametrize("api", list(Api))
def test_no_table_entry_is_stale(api: Api) -> None:
    defined = _spec_paths(api)
    stale = sorted(
        name
        for name, field in TABLES[api].items()
        if field.disposition is not Disposition.EXTENSION
        and not name.startswith("**.")
        and name not in defined
    )
    assert not stale, f"{api}: the table lists fields the specification does not define: {stale}"
    for name in TABLES[api]:
        if name.startswith("**."):
            assert any(path == name[3:] or path.endswith(name[2:]) for path in defined), name


@pytest.mark.parametrize("api", list(CHECKED_KEYS))
def test_every_checked_key_is_classified(api: Api) -> None:
    for parent in CHECKED_KEYS[api]:
        prefix = parent + "."
        defined = {p for p in _spec_paths(api) if p.startswith(prefix) and "." not in p[len(prefix) :]}
        missing = sorted(defined - TABLES[api].keys())
        assert not missing, f"{api}: keys under {parent} the table does not classify: {missing}"


@pytest.mark.parametrize("api", list(Api))
def test_every_spec_key_with_a_refused_name_is_classified(api: Api) -> None:
    """A key the specification defines whose name the forbidden-key walk refuses elsewhere (a litellm
    keyword, `*callback*`, `api_base`...) must be classified at its path, or the walk refuses a
    spec-valid request (`prompt_cache_options.ttl` once was)."""
    suspects = sorted(
        path
        for path in _spec_paths(api)
        if ("." in path or "[" in path)
        and (_last_key(path) in LITELLM_ONLY or _is_forbidden(_last_key(path)))
    )
    missing = [path for path in suspects if not _classified(api, path)]
    assert not missing, f"{api}: classify these (the walk would refuse them): {missing}"
    accepted = accepted_paths(api)
    for path in suspects:
        field = TABLES[api].get(path)
        assert path in accepted or (field is not None and field.disposition is Disposition.REFUSED), path


def test_chat_and_embeddings_refuse_nothing_the_specification_defines() -> None:
    """Today's Chat Completions and Embeddings tables refuse no field: every refusal needs a reason,
    and none applies (a deliberate refusal would be listed with its reason, and this test changed)."""
    for api in (Api.CHAT, Api.EMBEDDINGS):
        refused = [name for name, field in TABLES[api].items() if field.disposition is Disposition.REFUSED]
        assert refused == [], (api, refused)


def test_every_refusal_and_data_path_says_why() -> None:
    for api, table in TABLES.items():
        for name, field in table.items():
            assert field.note.strip(), (api, name)
            if field.disposition is Disposition.DATA_PATH:
                assert field.features, (api, name)
