"""The detectors: `secrets`, `pii` and `custom`, each a list of linear-time patterns and checks.

What belongs here: what each detector looks for, as data (a `Pattern`: a compiled regex, and the
check its match must pass), and `Detector.found()`, which answers "does this text contain one?"
and nothing else: no offsets, no matched text, so nothing of it can leak into a header, a log or
the ledger. Every pattern passes `patterns.linear_problem` (tests/sensitive/test_linear.py).

Why our own patterns rather than a library (measured; numbers in docs/sensitive.md): Yelp's
detect-secrets scans a 1 KB line in about 4 ms (20 times the 0.2 ms budget) and brings
`requests`; Microsoft Presidio needs spaCy and a language model of hundreds of megabytes. Both
were made for scanning repositories or documents offline, not a request's hot path. The forms
below follow the providers' documented key formats and the identifiers' published check digits.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.sensitive import checksums
from gateway.core.sensitive.patterns import MAX_WIDTH, compile_linear

WINDOW = 64 * 1024
OVERLAP = MAX_WIDTH + 256  # the widest match, and then some for the end's lookahead


class DetectorId(StrEnum):
    """Stable ids: they appear in `X-Privacy-Sensitive`, `privacy.sensitive` and the ledger."""

    SECRETS = "secrets"
    PII = "pii"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Pattern:
    """One form a detector recognises: `name` is for the corpus figures and tests, never logged
    with a match; `check` (when set) must accept the matched text (or its `group`).

    `needs`: substrings one of which every match contains (in the lower-cased text when `folded`):
    a text with none of them skips the regex (`in` on a string is a C loop, far cheaper)."""

    name: str
    regex: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    group: int = 0
    needs: tuple[str, ...] = ()
    folded: bool = False
    context: Callable[[str, int], bool] | None = None  # (text, match start): refuse by what precedes

    def found(self, text: str, lower: str) -> bool:
        if self.needs:
            haystack = lower if self.folded else text
            if not any(n in haystack for n in self.needs):
                return False
        for start in range(0, len(text), WINDOW):
            # One window at a time, each searched with OVERLAP characters more than it owns (a
            # match is at most MAX_WIDTH wide, so every match starting in it ends inside them), and
            # with the whole text before it for the lookbehinds: the same matches as one pass, but
            # no single call into `re` runs longer than a window (another thread gets the GIL).
            stop = start + WINDOW
            for m in self.regex.finditer(text, start, stop + OVERLAP):
                if m.start() >= stop:
                    break
                if self.context is not None and not self.context(text, m.start()):
                    continue
                if self.check is None or self.check(m.group(self.group)):
                    return True
        return False


@dataclass(frozen=True)
class Detector:
    id: DetectorId
    patterns: tuple[Pattern, ...]

    def found(self, text: str, lower: str | None = None) -> bool:
        """Whether `text` contains one of this detector's forms (`lower`: `text.lower()`, when the
        caller already has it)."""
        lower = text.lower() if lower is None else lower
        return any(p.found(text, lower) for p in self.patterns)

    def which(self, text: str) -> list[str]:
        """The names of the patterns that match (tests and the corpus figures only)."""
        lower = text.lower()
        return [p.name for p in self.patterns if p.found(text, lower)]


def _p(
    name: str,
    pattern: str,
    check: Callable[[str], bool] | None = None,
    *,
    group: int = 0,
    needs: tuple[str, ...] = (),
    ignorecase: bool = False,
    context: Callable[[str, int], bool] | None = None,
) -> Pattern:
    regex = compile_linear(pattern, re.IGNORECASE if ignorecase else 0)
    return Pattern(name, regex, check, group, needs, folded=ignorecase, context=context)


# -- secrets ----------------------------------------------------------------------------------

# Placeholders people paste in docs and examples: never a finding on their own.
PLACEHOLDER = re.compile(
    r"^(?:x{4,}|\*{4,}|<[^>]{0,64}>|\$\{[^}]{0,64}\}|\{\{[^}]{0,64}\}\})$", re.IGNORECASE
)
ASSIGNED_NAMES = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|client[_-]?secret|auth[_-]?token|credentials?)"
)
ASSIGNED_NEEDLES = ("pass", "pwd", "secret", "token", "key", "credential")


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def assigned_secret(value: str) -> bool:
    """A value assigned to a secret-sounding name that looks random: at least 12 characters,
    letters and digits mixed, entropy of 3.5 bits per character or more, not a placeholder."""
    value = value.strip("\"'`")
    if len(value) < 12 or PLACEHOLDER.match(value):
        return False
    kinds = sum(
        (any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value))
    )
    return kinds >= 2 and entropy(value) >= 3.5


def _basic_credentials(value: str) -> bool:
    """`Basic <base64 of user:password>`: decodes, and holds a colon."""
    try:
        return b":" in base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except ValueError:
        return False


def _url_password(value: str) -> bool:
    """`scheme://user:password@host`, not a placeholder password."""
    password = value[3:].split(":", 1)[1].rsplit("@", 1)[0]
    return not PLACEHOLDER.match(password) and password.lower() not in ("password", "pass", "secret")


def _random_token(value: str) -> bool:
    """A provider key's random part (not `sk-learn-is-a-library-for-ml`)."""
    return assigned_secret(value.rsplit("-", 1)[-1] if len(value.rsplit("-", 1)[-1]) >= 16 else value)


# Each pattern starts with a literal or a character class and only then looks behind (that the
# character before it is not part of the same token): `re` scans for a leading literal or class in
# C, while a leading lookbehind makes it try every position in Python-visible steps (5-20 times
# slower on prose, measured in bench/sensitive.py).
SECRETS = Detector(
    DetectorId.SECRETS,
    (
        # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-api03-) keys.
        _p(
            "openai-anthropic-key",
            r"sk-(?<![A-Za-z0-9_-]sk-)[A-Za-z0-9_-]{20,256}+",
            _random_token,
            needs=("sk-",),
        ),
        _p(
            "aws-access-key-id",
            r"A(?<![A-Z0-9]A)(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])",
            needs=("AKIA", "ASIA", "ABIA", "ACCA"),
        ),
        _p(
            "github-token",
            r"gh[pousr]_(?<![A-Za-z0-9_]gh._)[A-Za-z0-9]{36,255}+",
            needs=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        ),
        _p("github-fine-grained-token", r"github_pat_[A-Za-z0-9_]{60,255}+", needs=("github_pat_",)),
        _p("gitlab-token", r"glpat-[A-Za-z0-9_-]{20,64}+", needs=("glpat-",)),
        _p("slack-token", r"xox[abposr]-[A-Za-z0-9-]{10,250}+", needs=("xox",)),
        _p("google-api-key", r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", needs=("AIza",)),
        _p(
            "stripe-key",
            r"[sr]k_(?<![A-Za-z0-9][sr]k_)(?:live|test)_[A-Za-z0-9]{16,247}+",
            needs=("k_live_", "k_test_"),
        ),
        _p("huggingface-token", r"hf_(?<![A-Za-z0-9]hf_)[A-Za-z0-9]{34,40}(?![A-Za-z0-9])", needs=("hf_",)),
        _p(
            "private-key-block",
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
            needs=("-----BEGIN ",),
        ),
        _p(
            "jwt",
            r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,1024}+\.eyJ[A-Za-z0-9_-]{8,6000}+\.[A-Za-z0-9_-]{0,1024}+",
            needs=("eyJ",),
        ),
        _p(
            "bearer-token",
            r"\bbearer[ \t]{1,4}([A-Za-z0-9._~+/-]{20,2048}+={0,2})",
            assigned_secret,
            group=1,
            needs=("bearer",),
            ignorecase=True,
        ),
        _p(
            "basic-auth",
            r"\bbasic[ \t]{1,4}([A-Za-z0-9+/]{16,2048}+={0,2})(?![A-Za-z0-9+/=])",
            _basic_credentials,
            group=1,
            needs=("basic",),
            ignorecase=True,
        ),
        _p(
            "url-credentials",
            r"://[^\s:/@]{1,64}:[^\s:/@]{3,128}@[A-Za-z0-9.-]{1,253}",
            _url_password,
            needs=("://",),
        ),
        _p(
            "assigned-secret",
            ASSIGNED_NAMES
            + r"[A-Za-z0-9_-]{0,24}+[\"']?[ \t]{0,4}(?:=|:|:=|=>)[ \t]{0,4}([\"'`]?[^\s\"'`,;]{12,256})",
            assigned_secret,
            group=1,
            needs=ASSIGNED_NEEDLES,
            ignorecase=True,
        ),
    ),
)


# -- pii ----------------------------------------------------------------------------------------


def _card(text: str) -> bool:
    number = checksums.digits(text)
    return 13 <= len(number) <= 19 and "  " not in text and checksums.card(number)


def _phone(text: str) -> bool:
    return 8 <= len(checksums.digits(text)) <= 15


def _not_in_url(text: str, at: int) -> bool:
    """`user@host` after `scheme://` in the same token is a URL's userinfo, not an e-mail address
    (looks back at most 256 characters: constant work per match)."""
    before = text[max(0, at - 256) : at]
    token = before[max(before.rfind(" "), before.rfind("\n"), before.rfind("\t")) + 1 :]
    return "://" not in token


def _email(text: str) -> bool:
    """The domain part after `@` (the local part is not matched: scanning back from `@` would
    need a variable-width lookbehind); `..` is not a domain."""
    return ".." not in text


PII = Detector(
    DetectorId.PII,
    (
        _p(
            "email",
            r"@(?<=[\w.%+-]@)[A-Za-z0-9-]{1,63}\.[A-Za-z0-9.-]{0,190}[A-Za-z]{2,24}(?![\w-])",
            _email,
            needs=("@",),
            context=_not_in_url,
        ),
        # International form (+CC ...) or the North American (NNN) NNN-NNNN form; bare digit runs
        # are not phone numbers here (too many ids, amounts and timestamps look the same).
        _p("phone-international", r"\+(?<![\w+]\+)[1-9][0-9 .()-]{6,20}[0-9](?![0-9])", _phone, needs=("+",)),
        _p(
            "phone-north-america",
            r"\((?<![\w(]\()[2-9][0-9]{2}\)[ ]?[2-9][0-9]{2}[-.][0-9]{4}(?![0-9])",
            needs=("(",),
        ),
        _p("payment-card", r"[2-6](?<![0-9-][2-6])[0-9 -]{11,21}[0-9](?![0-9])", _card),
        _p(
            "iban",
            r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}[ ]?[A-Z0-9]{4}[ ]?[A-Z0-9 ]{4,35}(?<! )(?![A-Za-z0-9])",
            checksums.iban_in,
        ),
        _p(
            "us-ssn",
            r"[0-9](?<![0-9-][0-9])[0-9]{2}-[0-9]{2}-[0-9]{4}(?![0-9-])",
            checksums.us_ssn,
            needs=("-",),
        ),
        _p(
            "es-dni-nie",
            r"[XYZ0-9](?<![A-Za-z0-9][XYZ0-9])[0-9]{7}-?[A-Z](?![A-Za-z0-9])",
            checksums.spanish_dni,
        ),
        _p(
            "fr-nir",
            r"[12](?<![0-9][12]) ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB])"
            r" ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}(?![0-9])",
            checksums.french_nir,
        ),
        _p(
            "se-personnummer",
            r"[0-9](?<![0-9-][0-9])[0-9]{5,7}[-+][0-9]{4}(?![0-9-])",
            checksums.swedish_personnummer,
            needs=("-", "+"),
        ),
    ),
)


def custom(patterns: Sequence[str], keywords: Sequence[str]) -> Detector:
    """The operator's detector: patterns (checked by `linear_problem` at config load) and keywords
    (whole words, case-insensitive, e.g. project code names)."""
    found: list[Pattern] = [_p(f"pattern-{i}", p) for i, p in enumerate(patterns)]
    words = [w for w in keywords if w.strip()]
    if words:
        alternation = "|".join(re.escape(w.strip()) for w in sorted(words, key=len, reverse=True))
        found.append(Pattern("keywords", re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)))
    return Detector(DetectorId.CUSTOM, tuple(found))


BUILTIN: dict[DetectorId, Detector] = {DetectorId.SECRETS: SECRETS, DetectorId.PII: PII}
