"""The copies of data `load_litellm` frees (bench/PROFILE.md, issue 15): answers stay the same."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from gateway.upstream.litellm_adapter import load_litellm


def _bundled_file() -> dict[str, Any]:
    text = resources.files("litellm").joinpath("model_prices_and_context_window_backup.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def test_the_bundled_map_is_the_snapshot_litellm_loaded_not_a_second_parse() -> None:
    load_litellm()
    from litellm import utils
    from litellm.litellm_core_utils.get_model_cost_map import GetModelCostMap

    assert utils.get_bundled_model_cost_map() is GetModelCostMap.loaded_model_cost_map()


def test_every_capability_of_the_bundled_file_reads_the_same() -> None:
    load_litellm()
    from litellm import utils

    served = utils.get_bundled_model_cost_map()
    raw = _bundled_file()
    flags = [
        (model, name, value)
        for model, entry in raw.items()
        if isinstance(entry, dict)
        for name, value in entry.items()
        if isinstance(value, bool)
    ]
    assert len(flags) > 1000
    assert [(m, n) for m, n, v in flags if served.get(m, {}).get(n) is not v] == []
    # Alias rows carry no flags of their own and are served as their owner's entry.
    assert all(m in served for m, e in raw.items() if isinstance(e, dict) and "alias_of" in e)


def test_anthropic_capability_lookups_answer_as_from_the_file() -> None:
    load_litellm()
    from litellm.llms.anthropic.common_utils import AnthropicModelInfo

    raw = _bundled_file()
    models = [m for m, e in raw.items() if isinstance(e, dict) and "supports_sampling_params" in e]
    assert models
    for model in models:
        assert (
            AnthropicModelInfo._get_model_capability(model, "supports_sampling_params")
            is (raw[model]["supports_sampling_params"])
        )


def test_the_tokenizer_source_stays_and_its_parsed_copy_goes() -> None:
    load_litellm()
    from litellm import utils

    assert not hasattr(utils, "json_data")
    assert json.loads(utils.claude_json_str)["model"]
