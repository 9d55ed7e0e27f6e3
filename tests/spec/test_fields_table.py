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
    assert accepted(Api.CHAT) == openai_protocol.CHAT_FIELDS | openai_protocol.CHAT_DROPPED
    assert top_level(Api.CHAT, Disposition.DATA_PATH) >= openai_protocol.CHAT_DROPPED
    assert nested_keys(Api.CHAT, "messages[]") == openai_protocol.MESSAGE_KEYS
    assert top_level(Api.CHAT, Disposition.EXTENSION) == openai_protocol.EXTENSIONS


def test_the_embeddings_allowlist_is_the_table() -> None:
    assert accepted(Api.EMBEDDINGS) == openai_protocol.EMBEDDING_FIELDS


def test_a_refused_field_is_never_accepted() -> None:
    for api in Api:
        assert not accepted(api) & top_level(api, Disposition.REFUSED)
