"""What Sluice tells a client about retrying: the `Retry-After` of its 502 and 429 answers.

What belongs here: the values, and why. Clients act on them: the official openai and anthropic
Python SDKs retry a 429 or 5xx twice by default and sleep exactly `Retry-After` when it is
positive and within their limit (60 s in anthropic and in openai 1.x, 120 s in later openai
releases; above it they fall back to 0.5-8 s exponential backoff, or do not retry at all), unless
`x-should-retry` says otherwise; litellm's client (`calculate_retry_after`) honours up to 60 s;
LangChain's ChatOpenAI and ChatAnthropic use those SDKs' loops. So whatever Sluice sends is
waited for up to three times in a row by code the user did not write.

- 502 `upstream_unavailable` (every compliant deployment failed before starting the work, or its
  circuit is open): at most `UNAVAILABLE_MAX` (2 s). A retry is safe but rarely useful within
  seconds, and Sluice answers it without calling the upstream while the circuit is open: a short
  value lets an SDK's default loop give up in a few seconds instead of sleeping through the
  cool-down (up to 5 minutes) twice.
- 429 `rate_limited` (the upstream asked to wait, or a deployment is held): the real wait, since an
  SDK that sleeps it will usually get through. When the wait is longer than every SDK honours
  (`SDK_HONOURED_MAX`, 60 s), the answer also carries `x-should-retry: false`, which the Stainless
  SDKs (openai, anthropic) obey: they give up now instead of retrying into the same 429.

Values are whole seconds, at least 1 (RFC 9110 allows only integers), and never above the longest
hold (`MAX_WAIT`).
"""

from __future__ import annotations

import math

UNAVAILABLE_MAX = 2.0
SDK_HONOURED_MAX = 60.0
MAX_WAIT = 300.0
SHOULD_RETRY = "x-should-retry"  # the Stainless SDKs' header; not a Sluice name


def _seconds(wait: float, cap: float) -> int:
    return max(1, math.ceil(min(wait, cap)))


def unavailable_headers(wait: float) -> dict[str, str]:
    """Headers of a 502 where a retry is safe: `Retry-After` of 1-2 s."""
    return {"retry-after": str(_seconds(wait, UNAVAILABLE_MAX))}


def rate_limited_headers(wait: float) -> dict[str, str]:
    """Headers of a 429: the real wait; past what SDKs honour, also tell them not to retry."""
    seconds = _seconds(wait, MAX_WAIT)
    headers = {"retry-after": str(seconds)}
    if seconds > SDK_HONOURED_MAX:
        headers[SHOULD_RETRY] = "false"
    return headers
