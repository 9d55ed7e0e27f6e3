"""The fixed vocabulary of upstream error codes and types that may reach a client or a log line.

What belongs here: the documented error `type`/`code` values of the wires Sluice speaks, and
`known_code()`, which every `UpstreamStatusError` passes its code through. An upstream's error body
is not trusted text: a self-hosted server (or anything answering in its place) may put the prompt,
or a key, into `code`. A value outside this vocabulary becomes `other`; the raw value is never kept.

Sources (read 2026-12-06):
- OpenAI: the error-codes guide (https://platform.openai.com/docs/guides/error-codes) and the
  error objects of the API reference (`type`, `code`, `param`);
- Anthropic: https://docs.anthropic.com/en/api/errors and the SDK's `ErrorType` union;
- Google (Gemini API, OpenAI-compatible endpoint): the canonical `status` values of
  https://ai.google.dev/gemini-api/docs/troubleshooting.
"""

from __future__ import annotations

from typing import Final

OTHER: Final = "other"

OPENAI_TYPES: Final = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "insufficient_quota",
        "server_error",
        "service_unavailable_error",
    }
)
OPENAI_CODES: Final = frozenset(
    {
        "invalid_api_key",
        "invalid_organization",
        "unsupported_country_region_territory",
        "model_not_found",
        "context_length_exceeded",
        "rate_limit_exceeded",
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "credit_balance_exhausted",
        "slow_down",
        "server_is_overloaded",
        "invalid_value",
        "invalid_type",
        "missing_required_parameter",
        "unknown_parameter",
        "unsupported_parameter",
        "unsupported_value",
        "string_above_max_length",
        "array_above_max_length",
        "integer_above_max_value",
        "integer_below_min_value",
        "invalid_image_url",
        "invalid_image",
        "image_parse_error",
        "content_policy_violation",
        "invalid_prompt",
    }
)
ANTHROPIC_TYPES: Final = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
        "enforced_spend_limit_reached",
    }
)
GOOGLE_STATUSES: Final = frozenset(
    {
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "NOT_FOUND",
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
    }
)
KNOWN_CODES: Final = OPENAI_TYPES | OPENAI_CODES | ANTHROPIC_TYPES | GOOGLE_STATUSES


def known_code(value: object) -> str | None:
    """`value` if it is in the vocabulary, `other` if it is anything else, None if there is none."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) and value in KNOWN_CODES else OTHER
