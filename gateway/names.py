"""Names on the wire, each defined once: headers, endpoints, error types and codes, decisions.

DESIGN.md is the contract for every value here; tests compare them against it.
"""

from __future__ import annotations

from enum import StrEnum


class Header(StrEnum):
    BADGES = "X-Privacy-Badges"
    TRAINING = "X-Privacy-Training"
    RETENTION_DAYS = "X-Privacy-Retention-Days"
    PROVIDER = "X-Privacy-Provider"
    CHANNEL = "X-Privacy-Channel"
    POLICY = "X-Privacy-Policy"
    DECISION = "X-Privacy-Decision"
    REROUTED_FROM = "X-Privacy-Rerouted-From"
    SOURCE = "X-Privacy-Source"
    AS_OF = "X-Privacy-As-Of"
    SIMULATED = "X-Privacy-Simulated"
    SENSITIVE = "X-Privacy-Sensitive"  # detector ids whose rules tightened the policy (never matched text)
    FEATURES = "X-Privacy-Features"  # the data paths a request used (DESIGN.md, Data paths)
    REQUEST_ID = "X-Request-Id"
    # A key's limits (DESIGN.md "Several replicas"): OpenAI's names, so its clients read them.
    RATELIMIT_LIMIT_REQUESTS = "x-ratelimit-limit-requests"
    RATELIMIT_REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
    RATELIMIT_RESET_REQUESTS = "x-ratelimit-reset-requests"
    RATELIMIT_LIMIT_TOKENS = "x-ratelimit-limit-tokens"
    RATELIMIT_REMAINING_TOKENS = "x-ratelimit-remaining-tokens"
    RATELIMIT_RESET_TOKENS = "x-ratelimit-reset-tokens"


class Endpoint(StrEnum):
    """The APIs of the pipeline, as the ledger and the metrics name them."""

    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    MESSAGES = "messages"  # Anthropic's Messages API
    COUNT_TOKENS = "count_tokens"  # Anthropic's `POST /v1/messages/count_tokens`


class DecisionKind(StrEnum):
    ALLOWED = "allowed"
    REROUTED = "rerouted"
    BLOCKED = "blocked"


class OnViolation(StrEnum):
    BLOCK = "block"
    REROUTE = "reroute"


class ErrorType(StrEnum):
    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    PRIVACY = "privacy_policy_violation"
    RATE_LIMIT = "rate_limit_error"
    UPSTREAM = "upstream_error"
    SERVER = "server_error"


class AnthropicErrorType(StrEnum):
    """`error.type` of Anthropic's error envelope (the Messages API), by status: see `gateway/errors.py`."""

    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    NOT_FOUND = "not_found_error"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit_error"
    API = "api_error"
    OVERLOADED = "overloaded_error"


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    MALFORMED_REQUEST = "malformed_request"
    MISSING_FIELD = "missing_field"
    INVALID_VALUE = "invalid_value"
    FORBIDDEN_PARAMETER = "forbidden_parameter"
    UNKNOWN_POLICY = "unknown_policy"
    INVALID_API_KEY = "invalid_api_key"
    NO_COMPLIANT_DEPLOYMENT = "no_compliant_deployment"
    FEATURE_NOT_ALLOWED = "feature_not_allowed"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    MASTER_KEY_REQUIRED = "master_key_required"
    CLIENT_KEY_REQUIRED = "client_key_required"
    MODEL_NOT_FOUND = "model_not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal_error"
