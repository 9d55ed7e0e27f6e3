"""Content-aware tightening (DESIGN.md, "Sensitive content"): detectors, rules and text extraction.

What belongs here: pure code with no I/O. `detectors` (the `secrets`, `pii` and `custom` forms),
`checksums` (Luhn, IBAN, national identifiers), `patterns` (the linear-time rule every pattern
passes), `extract` (the text of a request, per wire format) and `rules` (`Tightening`: from a
request to the detector ids found and the policies they add). The service calls
`Tightening.check()` before routing; nothing here ever returns or keeps the matched text.
"""
