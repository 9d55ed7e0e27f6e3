"""A labelled corpus for the `secrets` and `pii` detectors: every value is made up here.

No real secret or personal datum: keys are AWS's documented examples or strings drawn from a
seeded generator, cards are the networks' published test numbers, IBANs the registry's examples,
e-mail domains are `example.*` (RFC 2606), phone numbers come from ranges reserved for fiction
(Ofcom's 020 7946 0xxx, North America's 555-01xx), national ids are generated with valid check
digits from arbitrary numbers. Negatives are the usual false-positive traps: UUIDs, hashes,
version strings, base64 images, code that names a secret without holding one, placeholders.
`scripts/sensitive_corpus.py` turns it into the precision/recall table of docs/sensitive.md.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

from gateway.core.sensitive import checksums
from gateway.core.sensitive.detectors import BUILTIN

SECRETS, PII = "secrets", "pii"
URLSAFE = string.ascii_letters + string.digits + "-_"
_rng = random.Random(18)  # seeded: the same made-up values every run


def _token(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _dni(number: int) -> str:
    return f"{number:08d}{checksums.DNI_LETTERS[number % 23]}"


def _nir(body: str) -> str:
    return f"{body}{97 - int(body) % 97:02d}"


def _personnummer(yymmdd: str, serial: str) -> str:
    for check in range(10):
        if checksums.luhn(f"{yymmdd}{serial}{check}"):
            return f"{yymmdd}-{serial}{check}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Example:
    text: str
    labels: frozenset[str]
    note: str


def _e(text: str, *labels: str, note: str = "") -> Example:
    return Example(text, frozenset(labels), note)


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    + base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"Test User","iat":1516239022}')
    .decode()
    .rstrip("=")
    + "."
    + _token(43, string.ascii_letters + string.digits + "-_")
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA" + _token(64) + "\n-----END RSA PRIVATE KEY-----"
BASIC = base64.b64encode(b"deploy-bot:" + _token(18).encode()).decode()
PNG = "data:image/png;base64," + base64.b64encode(bytes(_rng.randrange(256) for _ in range(600))).decode()

CORPUS: tuple[Example, ...] = (
    # -- secrets: positives ------------------------------------------------------------------
    _e("my aws key is AKIAIOSFODNN7EXAMPLE, can you check the policy?", SECRETS, note="AWS docs example"),
    _e("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", SECRETS, note="AWS docs example"),
    _e(f"export OPENAI_API_KEY=sk-proj-{_token(48)}", SECRETS),
    _e(f"client = OpenAI(api_key='sk-{_token(48)}')", SECRETS),
    _e(
        f"ANTHROPIC_API_KEY=sk-ant-api03-{_token(80, string.ascii_letters + string.digits + '-_')}AA", SECRETS
    ),
    _e(f"git remote set-url origin https://ghp_{_token(36)}@github.com/acme/app.git", SECRETS),
    _e(f"token: github_pat_11{_token(20)}_{_token(59)}", SECRETS),
    _e(f"GITLAB_TOKEN=glpat-{_token(20)}", SECRETS),
    _e(
        f"slack says xoxb-{_token(12, string.digits)}-{_token(13, string.digits)}-{_token(24)} is invalid",
        SECRETS,
    ),
    _e(f"const key = 'AIza{_token(35, URLSAFE)}';", SECRETS),
    _e("stripe.api_key = 'sk_" + "live_" + _token(24) + "'", SECRETS),
    _e(f"HF_TOKEN=hf_{_token(34)}", SECRETS),
    _e(f"why does ssh reject this?\n{PEM}", SECRETS),
    _e("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", SECRETS),
    _e(f"the API returns 401 for {JWT}", SECRETS),
    _e(f"curl -H 'Authorization: Bearer {_token(40)}' https://api.example.com", SECRETS),
    _e(f"Authorization: Basic {BASIC}", SECRETS),
    _e(f"DATABASE_URL=postgres://app:{_token(20)}@db.internal:5432/app", SECRETS),
    _e(f'{{"db_password": "{_token(20)}"}}', SECRETS),
    _e(f"client_secret: {_token(32)}", SECRETS),
    _e(f"SECRET_KEY = '{_token(50)}'", SECRETS),
    _e(f"password={_token(14)}9", SECRETS),
    # Known misses: no recognisable form and no assignment (documented in docs/sensitive.md).
    _e("my password is hunter2-Correct-Horse, is it strong enough?", SECRETS, note="prose, no assignment"),
    _e(f"the internal token acme_{_token(32)} expired", SECRETS, note="an in-house format: use custom"),
    # -- secrets: negatives (false-positive traps) -------------------------------------------
    _e("request id 123e4567-e89b-12d3-a456-426614174000 failed"),
    _e("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 broke the build"),
    _e("sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    _e("upgrade from v1.2.3 to 2.0.0-rc.1 (Python 3.11.4)"),
    _e(f"![chart]({PNG})"),
    _e("api_key = os.environ['OPENAI_API_KEY']"),
    _e("password = getpass.getpass('Password: ')"),
    _e("token = None  # set by login()"),
    _e("OPENAI_API_KEY=sk-your-key-here"),
    _e("password: '<your-password>'"),
    _e("secret: ${VAULT_SECRET_REFERENCE}"),
    _e("api_key: xxxxxxxxxxxxxxxxxxxxxxxx"),
    _e("we use scikit-learn, sk-learn-is-a-great-library-for-machine-learning"),
    _e("send a Bearer token in the Authorization header"),
    _e("the basic idea is simple: cache the token and refresh it"),
    _e("connect to postgres://app@db.internal:5432/app"),
    _e("DATABASE_URL=postgres://app:${DB_PASSWORD}@db.internal/app"),
    _e("AKIA is the prefix of long-term AWS access key ids"),
    _e('a JWT starts with eyJ because base64 of {" is eyJ'),
    _e("def refresh_token(self, token_type: str) -> Token: ..."),
    _e("the passwordless login flow keeps the token in memory"),
    _e("-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa"),
    _e("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
    # A known false positive: a hash assigned to a secret-sounding name looks like a secret.
    _e("token_hash = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'", note="known FP"),
    # -- pii: positives ------------------------------------------------------------------------
    _e("please reply to jane.doe@example.com about the invoice", PII),
    _e("Contact: j.smith+billing@mail.example.org", PII),
    _e("call me on +44 20 7946 0958 after five", PII),
    _e("her number is +1 (202) 555-0182", PII),
    _e("office: (202) 555-0147", PII),
    _e("charge card 4111 1111 1111 1111, exp 12/29", PII, note="Visa test number"),
    _e("card number 5555555555554444", PII, note="Mastercard test number"),
    _e("amex 3782-822463-10005", PII, note="Amex test number"),
    _e("wire it to IBAN DE89 3704 0044 0532 0130 00", PII, note="registry example"),
    _e("GB82WEST12345698765432 is the account", PII, note="registry example"),
    _e("FR14 2004 1010 0505 0001 3M02 606", PII, note="registry example"),
    _e("SSN 123-45-6789 on the form", PII),
    _e(f"DNI: {_dni(48_213_771)}", PII),
    _e(f"NIE {'X' + _dni(1_234_567)[1:-1]}{checksums.DNI_LETTERS[1_234_567 % 23]}", PII),
    _e(f"numéro de sécurité sociale {_nir('2850275120045')}", PII),
    _e(f"personnummer {_personnummer('850709', '123')}", PII),
    # Known misses: national formats without a prefix, obfuscation, names and addresses (no NER).
    _e("ring 020 7946 0123 tomorrow", PII, note="national format without +44"),
    _e("write to jane at example dot com", PII, note="obfuscated e-mail"),
    _e("Jane Doe lives at 12 Example Street, Springfield", PII, note="name and address: no NER"),
    # -- pii: negatives ------------------------------------------------------------------------
    _e("@app.route('/users') returns the list"),
    _e("npm install @types/node and @angular/core"),
    _e("ssh git@localhost works, user@host does not resolve"),
    _e("order 1234567812345678 shipped", note="16 digits, fails Luhn"),
    _e("timestamp 1701234567890 in ms"),
    _e("ISBN 978-3-16-148410-0"),
    _e("the meeting is on 2024-01-15 at 10:30"),
    _e("192.168.100.200 and 10.0.0.1 are private"),
    _e("it costs $1,299.99 or EUR 1.299,99"),
    _e("DE12 ABCD 1234 5678 9012 34 is a part number", note="IBAN shape, bad checksum"),
    _e("build 000-12-3456 passed", note="SSN shape, area 000 never issued"),
    _e("room 12345678A on floor 3", note="DNI shape, wrong letter"),
    _e("version 3.2.1-beta+exp.sha.5114f85"),
    _e("cpu: 4 cores, 16 GB, 2x 1TB NVMe"),
    _e("the equation 2+2=4 and -1+3"),
    _e("track 850709-1230 of the album", note="personnummer shape, fails Luhn"),
    # A known false positive: a 16-digit id that starts like a Visa card and passes Luhn (1 in 10 do).
    _e("tracking number 4000 1234 5678 9017", note="known FP"),
)


def labelled(detector: str) -> list[tuple[str, bool]]:
    """(text, expected) for one detector: its positives, and every example labelled otherwise."""
    return [(e.text, detector in e.labels) for e in CORPUS]


@dataclass(frozen=True)
class Figures:
    detector: str
    positives: int
    negatives: int
    true_positives: int
    false_positives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.positives if self.positives else 1.0


def figures() -> list[Figures]:
    """Precision and recall of each built-in detector over the corpus."""
    result = []
    for detector in BUILTIN.values():
        rows = [(detector.found(text), expected) for text, expected in labelled(detector.id)]
        result.append(
            Figures(
                detector.id,
                positives=sum(1 for _, e in rows if e),
                negatives=sum(1 for _, e in rows if not e),
                true_positives=sum(1 for f, e in rows if f and e),
                false_positives=sum(1 for f, e in rows if f and not e),
            )
        )
    return result


def table() -> str:
    """The Markdown table of docs/sensitive.md (between its `corpus` markers)."""
    lines = [
        "| detector | positives | negatives | true positives | false positives | precision | recall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in figures():
        lines.append(
            f"| `{f.detector}` | {f.positives} | {f.negatives} | {f.true_positives} | {f.false_positives} "
            f"| {f.precision:.2f} | {f.recall:.2f} |"
        )
    return "\n".join(lines)
