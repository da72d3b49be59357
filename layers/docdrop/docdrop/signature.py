"""Cobalt webhook signatures: HMAC-SHA256 in lowercase hex, over the raw body or its JSON.stringify form."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# An array index in JavaScript: a canonical non-negative integer below 2**32 - 1. Objects list these keys first.
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_ARRAY_INDEX = 2**32 - 2
# Cobalt's header: an HMAC-SHA256 in hex. Anything else is refused before the body is read.
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


def _js_number(value: float) -> str:
    """Format a number exactly as JavaScript's Number.prototype.toString does (ECMA-262 Number::toString)."""
    if value != value or value in (float("inf"), float("-inf")):
        return "null"  # JSON.stringify writes NaN and the infinities as null
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    leading_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    # n is the decimal point position relative to the shortest digit string, as in the spec.
    n = len(int_part) - leading_zeros + (int(exp) if exp else 0)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        e_text = f"e+{e}" if e >= 0 else f"e-{-e}"
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + e_text
    return sign + text


def _js_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # JavaScript parses every number as a double: large integers lose precision exactly as float() does,
        # and one beyond the largest double is Infinity, which JSON.stringify writes as null.
        if abs(value) < 2**53:
            return str(value)
        try:
            return _js_number(float(value))
        except OverflowError:
            return "null"
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_js_value(k)}:{_js_value(value[k])}" for k in _js_key_order(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_js_value(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _js_key_order(value: dict[Any, Any]) -> list[str]:
    """Keys in JavaScript's own order: array-index keys ascending by number, then the others as received."""
    keys = [str(k) for k in value]
    indexes = [k for k in keys if _ARRAY_INDEX.fullmatch(k) and int(k) <= _MAX_ARRAY_INDEX]
    if not indexes:
        return keys
    chosen = set(indexes)
    return sorted(indexes, key=int) + [k for k in keys if k not in chosen]


def js_json_stringify(value: Any) -> str:
    """The text JavaScript's JSON.stringify(value) produces: compact, keys in order, non-ASCII unescaped."""
    return _js_value(value)


def well_formed_signature(header: str | None) -> bool:
    """True when `header` can be an HMAC-SHA256 in hex (64 digits, around spaces): worth checking against a secret."""
    return header is not None and _SIGNATURE.fullmatch(header.strip()) is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes | str) -> Any:
    """A body as JSON, refusing NaN and the infinities, which Python accepts and JSON.stringify writes as null: a signed
    null could otherwise be replaced by them and still verify."""
    return json.loads(raw, parse_constant=_no_constant)


def sign_payload(secret: str, payload: bytes) -> str:
    """Cobalt's `cobalt-verification` header value for these bytes."""
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def verify_cobalt_signature(raw_body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """True when `signature` is Cobalt's HMAC of the raw body, or of its JSON.stringify form, under any given secret.

    Comparison is constant-time; a body that is not JSON is checked over its raw bytes only.
    """
    if signature is None or not well_formed_signature(signature):
        return False
    candidate = signature.strip().lower().encode("ascii", "replace")
    bodies = [raw_body]
    try:
        restringified = js_json_stringify(parse_json(raw_body)).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError, RecursionError, OverflowError):  # not JSON JavaScript could re-serialise
        restringified = None
    if restringified is not None and restringified != raw_body:
        bodies.append(restringified)
    matched = False
    for secret in secrets:
        if not secret:
            continue
        for body in bodies:
            # Evaluate every combination so the time taken does not tell which one matched.
            matched |= hmac.compare_digest(sign_payload(secret, body).encode("ascii"), candidate)
    return matched
