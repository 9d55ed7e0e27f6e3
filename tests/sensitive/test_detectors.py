"""The detectors on the labelled corpus and their check digits, one form at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.sensitive import checksums
from gateway.core.sensitive.detectors import PII, SECRETS, custom
from tests.sensitive.corpus import CORPUS, Figures, figures

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("figure", figures(), ids=lambda f: f.detector)
def test_corpus_precision_and_recall(figure: Figures) -> None:
    """Floors just below the recorded figures: a change that loses precision or recall fails here."""
    assert figure.precision >= 0.90
    assert figure.recall >= 0.80


def test_the_doc_records_the_current_figures() -> None:
    run = [sys.executable, str(ROOT / "scripts" / "sensitive_corpus.py"), "--check"]
    result = subprocess.run(run, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_no_example_is_labelled_with_an_unknown_detector() -> None:
    assert {label for e in CORPUS for label in e.labels} <= {"secrets", "pii"}


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("AKIAIOSFODNN7EXAMPLE", "aws-access-key-id"),
        ("ASIAIOSFODNN7EXAMPLE", "aws-access-key-id"),
        ("sk-ant-api03-" + "Zx81kPq0Lm2Nb7Vc4Xs9Qw3Er6Ty1Ui" * 3, "openai-anthropic-key"),
        ("-----BEGIN EC PRIVATE KEY-----", "private-key-block"),
        ("Authorization: Bearer Zx81kPq0Lm2Nb7Vc4Xs9Qw3Er6Ty1Ui", "bearer-token"),
        ("redis://default:S3cr3tPassw0rd@cache.example.com:6379", "url-credentials"),
    ],
)
def test_secret_forms(text: str, name: str) -> None:
    assert name in SECRETS.which(text)


@pytest.mark.parametrize(
    "text",
    [
        "AKIAIOSFODNN7EXAMPLEX",  # longer than an access key id
        "XAKIAIOSFODNN7EXAMPLE",
        "sk-" + "a" * 40,  # no entropy
        "Bearer <token>",
        "redis://default:password@cache.example.com",
    ],
)
def test_secret_look_alikes(text: str) -> None:
    assert not SECRETS.found(text), SECRETS.which(text)


def test_check_digits() -> None:
    assert checksums.luhn("79927398713") and not checksums.luhn("79927398710")
    assert checksums.card("4111111111111111") and not checksums.card("4111111111111112")
    assert not checksums.card("9111111111111111")  # no scheme starts with 9
    assert checksums.iban("GB82 WEST 1234 5698 7654 32") and not checksums.iban("GB82 WEST 1234 5698 7654 33")
    assert not checksums.iban("XX82WEST12345698765432")  # unknown country
    assert checksums.iban_in("DE89 3704 0044 0532 0130 00 AB")
    assert checksums.spanish_dni("12345678Z") and not checksums.spanish_dni("12345678A")
    assert checksums.spanish_dni("X1234567L") and not checksums.spanish_dni("X1234567A")
    assert checksums.french_nir("284027512004540") and not checksums.french_nir("284027512004541")
    assert checksums.swedish_personnummer("811218-9876") and not checksums.swedish_personnummer("811218-9875")
    assert not checksums.swedish_personnummer("811318-9876")  # no 13th month
    assert checksums.us_ssn("123-45-6789") and not checksums.us_ssn("666-45-6789")


def test_pii_needs_the_check_digits() -> None:
    assert PII.which("card 4111-1111-1111-1111") == ["payment-card"]
    assert not PII.found("card 4111-1111-1111-1112")
    assert not PII.found("DE89 3704 0044 0532 0130 01")


def test_custom_keywords_are_whole_words_in_any_case() -> None:
    detector = custom([r"\bPRJ-[0-9]{4}\b"], ["Bluebird"])
    assert detector.found("about BLUEBIRD") and detector.found("see PRJ-1234.")
    assert not detector.found("bluebirds") and not detector.found("PRJ-123")


def test_nothing_is_returned_but_a_yes_or_no() -> None:
    """The detectors' API cannot hand matched text to a caller (it answers found or not)."""
    assert SECRETS.found("AKIAIOSFODNN7EXAMPLE") is True
