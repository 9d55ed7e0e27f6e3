"""docs/fields.md is what the field table gives, and the runtime's allowlists are the table's."""

from __future__ import annotations

import subprocess
import sys

from gateway.api import openai_protocol
from gateway.api.fields import Api, Disposition, accepted, nested_keys, top_level
from tests.gateway.support import REPO_ROOT


def test_docs_fields_md_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "fields_doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_chat_allowlist_is_the_table() -> None:
    assert openai_protocol.CHAT_FIELDS | openai_protocol.CHAT_DROPPED == accepted(Api.CHAT)
    assert openai_protocol.CHAT_DROPPED <= top_level(Api.CHAT, Disposition.DATA_PATH)
    assert openai_protocol.MESSAGE_KEYS == nested_keys(Api.CHAT, "messages[]")
    assert openai_protocol.EXTENSIONS == top_level(Api.CHAT, Disposition.EXTENSION)


def test_the_embeddings_allowlist_is_the_table() -> None:
    assert openai_protocol.EMBEDDING_FIELDS == accepted(Api.EMBEDDINGS)


def test_a_refused_field_is_never_accepted() -> None:
    for api in Api:
        assert not accepted(api) & top_level(api, Disposition.REFUSED)
