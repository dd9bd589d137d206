"""Content codings: choosing one from a request's Accept-Encoding (RFC 9110 §12.5.3).

Pure functions, shared by on-the-fly compression (rules/compress.py) and precompressed static
files (handlers/static.py).
"""

from __future__ import annotations

import re

# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# RFC 9110 §18.6: "x-gzip" is an alias of "gzip".
_ALIASES = {"x-gzip": "gzip"}


def parse_accept_encoding(value: bytes) -> dict[str, float]:
    """Coding (lower case) -> q. An element whose weight is malformed is ignored (as if absent)."""
    weights: dict[str, float] = {}
    for element in value.decode("latin-1").split(","):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        if params:
            name, _, weight = params.partition("=")
            if name.strip().lower() != "q" or not _QVALUE.fullmatch(weight.strip()):
                continue
            q = float(weight.strip())
        coding = _ALIASES.get(coding, coding)
        weights[coding] = max(q, weights.get(coding, 0.0)) if coding in weights else q
    return weights


def acceptable(weights: dict[str, float], coding: str) -> float:
    """The q the client gives `coding`: its own entry, else "*", else 0 (identity: else 1)."""
    if coding in weights:
        return weights[coding]
    if "*" in weights:
        return weights["*"]
    return 1.0 if coding == "identity" else 0.0


def choose(accept: bytes | None, offered: tuple[str, ...]) -> str | None:
    """The coding of `offered` (in the server's order of preference) that the client weighs
    highest; equal weights go to the earlier one. None: identity (no Accept-Encoding, or no
    offered coding with q > 0)."""
    if accept is None:
        return None
    weights = parse_accept_encoding(accept)
    best: str | None = None
    best_q = 0.0
    for coding in offered:
        q = acceptable(weights, coding)
        if q > best_q:
            best, best_q = coding, q
    return best


def identity_refused(accept: bytes | None) -> bool:
    """Whether the client said identity is not acceptable (`identity;q=0`, or `*;q=0` without
    an identity entry)."""
    if accept is None:
        return False
    return acceptable(parse_accept_encoding(accept), "identity") == 0.0
