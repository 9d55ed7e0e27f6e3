"""Check digits that turn a look-alike into a finding: Luhn, IBAN mod-97 and national identifiers.

What belongs here: pure functions from a candidate string (already matched by a pattern) to
"its check digits are right". A random digit string passes Luhn one time in ten, an IBAN's mod-97
one time in 97, a Spanish DNI's letter one time in 23: the checks are what keep the `pii`
detector's precision up on numbers that merely look like identifiers.
"""

from __future__ import annotations

from datetime import date

# Length of the IBAN of each country that uses one (the SWIFT IBAN registry; a subset is enough to
# refuse look-alikes, and an unknown country is refused, not guessed).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "ME": 22, "MK": 19, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24,
    "TR": 26, "UA": 29,
}  # fmt: skip
DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn(number: str) -> bool:
    """The Luhn check of a string of digits (payment cards, Swedish personal numbers)."""
    total = 0
    for i, char in enumerate(reversed(number)):
        n = ord(char) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card(number: str) -> bool:
    """A payment card number: a known scheme's prefix and length, and the Luhn check."""
    n = len(number)
    brand = (
        (number[0] == "4" and n in (13, 16, 19))
        or (51 <= int(number[:2]) <= 55 and n == 16)
        or (2221 <= int(number[:4]) <= 2720 and n == 16)
        or (number[:2] in ("34", "37") and n == 15)
        or ((number[:4] == "6011" or number[:2] == "65" or 644 <= int(number[:3]) <= 649) and 16 <= n <= 19)
        or (3528 <= int(number[:4]) <= 3589 and 16 <= n <= 19)
    )
    return brand and luhn(number)


def iban(text: str) -> bool:
    """An IBAN: its country's length and the ISO 7064 mod-97 check (ISO 13616)."""
    compact = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def iban_in(text: str) -> bool:
    """An IBAN at the start of `text`, which may run on into other space-separated groups."""
    groups = text.split(" ")
    return any(iban(" ".join(groups[:n])) for n in range(len(groups), 0, -1))


def spanish_dni(text: str) -> bool:
    """A Spanish DNI (8 digits and a letter) or NIE (X/Y/Z, 7 digits, a letter): mod-23 letter."""
    compact = text.replace("-", "").upper()
    head = compact[:-1]
    if head[0] in "XYZ":
        head = str("XYZ".index(head[0])) + head[1:]
    return head.isdigit() and DNI_LETTERS[int(head) % 23] == compact[-1]


def french_nir(text: str) -> bool:
    """A French social security number (NIR, 13 characters and a 2-digit key = 97 - n mod 97);
    Corsica's 2A/2B count as 19/18 in the key."""
    compact = text.replace(" ", "").upper()
    body, key = compact[:13], compact[13:]
    body = (
        body.replace("2A", "19", 1)
        if body[5:7] == "2A"
        else body.replace("2B", "18", 1)
        if body[5:7] == "2B"
        else body
    )
    if not body.isdigit() or not key.isdigit():
        return False
    month = int(body[3:5])
    return (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99) and 97 - int(body) % 97 == int(key)


def swedish_personnummer(text: str) -> bool:
    """A Swedish personal number YYMMDD-NNNC: a real date (day + 60 for a coordination number) and
    the Luhn check over the ten digits."""
    number = digits(text)[-10:]
    year, month, day = int(number[:2]), int(number[2:4]), int(number[4:6])
    day = day - 60 if day > 60 else day
    try:
        date(2000 + year, month, day)
    except ValueError:
        return False
    return luhn(number)


def us_ssn(text: str) -> bool:
    """A US Social Security number AAA-GG-SSSS: no check digit, only the SSA's never-issued ranges
    (area 000, 666, 900-999; group 00; serial 0000) are refused."""
    area, group, serial = text.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
