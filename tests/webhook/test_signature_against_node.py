"""JSON.stringify as Node runs it, over 3,000 generated bodies: numbers of every size, integer-like keys (JavaScript
lists them first, ascending), unicode and escapes, nesting. A valid delivery whose bytes are not exactly what was signed
must still verify, because Cobalt does not retry a 401."""

from __future__ import annotations

import json
import random
import subprocess
from typing import Any

import pytest
from docdrop.signature import js_json_stringify, verify_cobalt_signature

SECRET = "whsec_generated_bodies"
NODE = r"""
const crypto = require('crypto');
const raws = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(raws.map((raw) => {
  const text = JSON.stringify(JSON.parse(raw));
  return [text, crypto.createHmac('sha256', process.argv[1]).update(text).digest('hex')];
})));
"""
WORDS = ["a", "id", "data", "Ω", "日本", "é", "✓", "🩺", "\\", '"', "/", "\t", "\u2028", "\x00", "10", "0", "01", "-1"]


def _key(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:  # integer-like: array indexes, and look-alikes that are not (leading zero, sign, too big)
        return rng.choice(
            [str(rng.randrange(0, 50)), str(rng.randrange(0, 2**32)), "4294967295", "4294967294", "007", "-3", "1.5"]
        )
    if kind < 0.45:
        return chr(rng.choice([0xD83E, 0xDC00]))  # a lone surrogate: a \u escape in the raw body
    return "".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 4)))


def _number(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.randrange(-1000, 1000),
            rng.randrange(-(2**70), 2**70),
            10 ** rng.randrange(15, 25),
            int("9" * rng.randrange(300, 420)),  # beyond any double: Infinity in JavaScript, null in JSON
            rng.uniform(-1e6, 1e6),
            rng.choice([1e21, 1e-7, 5e-324, 1.7976931348623157e308, 0.1, -0.0, 123456789.125, 2.5e-10]),
            float(rng.randrange(0, 10**6)) / 8,
        ]
    )


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth > 3 or kind < 0.3:
        return rng.choice([_number(rng), None, True, False, "".join(rng.choice(WORDS) for _ in range(3))])
    if kind < 0.65:
        return {_key(rng): _value(rng, depth + 1) for _ in range(rng.randrange(0, 6))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def _raw(rng: random.Random, value: Any) -> str:
    """The body as some sender may have written it: compact or indented, escaped or not."""
    text = json.dumps(value, ensure_ascii=True)
    if "\\ud8" in text.lower() or "\\udc" in text.lower() or rng.random() < 0.5:
        return json.dumps(value, ensure_ascii=True, indent=rng.choice([None, 2]))
    return json.dumps(value, ensure_ascii=False, separators=rng.choice([(",", ":"), (", ", ": ")]))


@pytest.fixture(scope="module")
def bodies() -> list[tuple[str, str, str]]:
    rng = random.Random(20261130)
    raws = []
    for _ in range(3000):
        event = {"id": f"evt-{rng.randrange(10**9)}", "type": "document.uploaded", "data": _value(rng, 0)}
        if rng.random() < 0.5:
            event = {**{_key(rng): _value(rng, 2) for _ in range(3)}, **event}
        raws.append(_raw(rng, event))
    completed = subprocess.run(
        ["node", "-e", NODE, SECRET], input=json.dumps(raws).encode(), capture_output=True, check=True, timeout=120
    )
    answers = json.loads(completed.stdout)
    return [(raw, text, signature) for raw, (text, signature) in zip(raws, answers, strict=True)]


def test_our_json_stringify_equals_nodes_over_3000_generated_bodies(bodies: list[tuple[str, str, str]]) -> None:
    mismatches = [raw for raw, text, _ in bodies if js_json_stringify(json.loads(raw)) != text]
    assert mismatches == [], f"{len(mismatches)} of {len(bodies)} differ, e.g. {mismatches[:1]}"
    assert sum(1 for raw, text, _ in bodies if raw != text) > 2000  # most bodies are not what was signed


def test_every_generated_body_verifies_against_the_docs_signature(bodies: list[tuple[str, str, str]]) -> None:
    refused = [raw for raw, _, signature in bodies if not verify_cobalt_signature(raw.encode(), signature, [SECRET])]
    assert refused == []
