"""Prometheus text exposition → samples, fast for the common subset and exact for everything else.

prometheus_client's parsers are the reference: they accept what they accept and raise what they
raise. Parsing a 3 KB body with them costs about 300 µs, most of the CPU budget of a fetch, so
bodies inside a strict subset of the text format 0.0.4 — printable ASCII, one space between
fields, plain `name{label="value",...} value [timestamp]` samples, `# HELP`/`# TYPE` lines — are
parsed here in a few tens of µs. Anything outside the subset (a tab, a quoted name, an exemplar,
a counter TYPE without `_total`, an OpenMetrics body, ...) goes to the reference parsers, so the
result and the error for a given body are the reference's either way. tests/test_exposition.py
proves it on more than 100,000 generated bodies.

A sample is `(name, labels, value, timestamp)`: value an int or float as the reference gives it,
timestamp in seconds (a float, or an OpenMetrics Timestamp) or None.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import parser as text_parser
from prometheus_client.openmetrics import parser as om_parser

from .base import InvalidDataError, MetricsParseError

Sample = tuple[str, dict[str, str], Any, Any]

# Lines of printable ASCII only (every pattern below admits nothing else): no tab, CR or other
# character whose handling by the reference (str.strip, whitespace splits) the fast path would mirror.
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
# A label: a name as the reference accepts it unquoted (reserved `__...` names are checked apart), and a
# quoted value of printable ASCII with the three escapes the reference decodes.
_VALUE = r'[\x20\x21\x23-\x5b\x5d-\x7e]*(?:\\[\\n"][\x20\x21\x23-\x5b\x5d-\x7e]*)*'  # "unrolled": no per-character alternation
_LABEL = rf'[a-zA-Z_][a-zA-Z0-9_]*="{_VALUE}"'
# Every number float() reads the same way as the reference's int()-then-float(); nothing else.
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|inf|NaN|nan)"
# A sample line of the subset is `NAME{LABELS} NUMBER[ NUMBER]` (or without `{LABELS}`), one space apart,
# which fast_samples checks piece by piece.
_LABELS = re.compile(rf"(?:{_LABEL},)*(?:{_LABEL})?")
_NUMBER_RE = re.compile(_NUMBER)
_PAIR = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)="({_VALUE})"')
_VALID_NAME = re.compile(_NAME)
_ESCAPE = re.compile(r'\\[\\n"]')
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
# Types the reference builds a family for (`untyped` is its alias of `unknown`); `counter` only with `_total`.
_TYPES = frozenset({"gauge", "histogram", "summary", "gaugehistogram", "unknown", "untyped", "info", "stateset"})
# HELP/TYPE lines and sample heads (name and labels) repeat across endpoints and polls: their verdicts and parsed
# label dicts are remembered (each bounded; emptied when full). The label dicts are shared between samples: read
# them, never change them.
_CACHE_SIZE = 8192
_comments: dict[str, bool] = {}
_heads: dict[str, tuple[str, dict[str, str], str] | bool] = {}  # `name{labels`, without the closing brace
_bare_heads: dict[str, tuple[str, dict[str, str], str] | bool] = {}  # a name without labels


def samples(body: str, openmetrics: bool = False) -> list[Sample]:
    """The body's samples; MetricsParseError for anything that is not an exposition, InvalidDataError for
    a series given twice (the format requires each to be unique; summing them would double the figures)."""
    if not openmetrics:
        fast = fast_samples(body)
        if fast is not None:
            return fast  # holds no series twice: fast_samples leaves those to the reference
    found = reference_samples(body, openmetrics)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name, labels, _, _ in found:
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            named = f" {name}" if len(name) <= 100 and _VALID_NAME.fullmatch(name) else ""  # never an odd text
            raise InvalidDataError(f"a series{named} appears twice in the body")
        seen.add(key)
    return found


def reference_samples(body: str, openmetrics: bool = False) -> list[Sample]:
    """prometheus_client's parsers: the body's own format first, then the other (mislabelled bodies)."""
    parsers = (om_parser.text_string_to_metric_families, text_parser.text_string_to_metric_families)
    if not openmetrics:
        parsers = parsers[::-1]
    errors = []
    for parse in parsers:
        try:
            found = [(s.name, s.labels, s.value, s.timestamp) for family in parse(body) for s in family.samples]
        except Exception as exc:  # the parsers raise ValueError, KeyError, IndexError, ...
            # Only the error's type: its text quotes the body, which might echo request headers.
            errors.append(type(exc).__name__)
            continue
        if found or not body.strip() or body.strip() == "# EOF":
            return found
        errors.append("no samples")
    raise MetricsParseError(f"not a Prometheus/OpenMetrics exposition ({len(body)} characters; parsers: {', '.join(errors)})")


def fast_samples(body: str) -> list[Sample] | None:
    """The samples of a body inside the subset, exactly as the reference text parser gives them;
    None when the body is outside the subset (or empty of samples) and the reference must decide.

    A sample line is accepted only when it is whole in the subset's grammar, checked piece by piece with
    string methods (a regex over every line cost half the parse). Its head — the name and the label set,
    up to the line's last `} ` (only numbers follow it) — is checked and parsed once per distinct text,
    and the numbers after it once per body (bucket counts repeat within a body). Per line this leaves a
    few string methods and dictionary lookups."""
    # Every line holding a character outside ASCII is outside the subset (_head, _comment_in_subset and the
    # number grammar admit none), so one check of the whole body replaces one per line.
    if not body.isascii():
        return None
    found: list[Sample] = []
    append = found.append
    seen: set[str] = set()  # the series, by canonical key (the same for the same labels in another order)
    see = seen.add
    comments, heads, bare_heads = _comments, _heads, _bare_heads
    # `value[ timestamp]` text -> (value, timestamp in seconds), for this body only: within a body the cumulative
    # bucket counts repeat (the upper buckets all hold the total) and every line has the same timestamp, while
    # across minutes the timestamps differ, so a cache kept between bodies would only churn.
    rests: dict[str, tuple[Any, Any]] = {}
    try:
        for line in body.split("\n"):
            if not line:
                continue
            if line[0] == " " or line[-1] == " ":  # rare: strip only then (a copy of every line cost 3 %)
                line = line.strip(" ")
                if not line:
                    continue
            if line[0] == "#":
                verdict = comments.get(line)
                if verdict is None:
                    verdict = _remember(comments, line, _comment_in_subset(line))
                if not verdict:
                    return None
                continue
            # `name{labels} numbers`: the head is keyed without its closing brace. Splitting at the last `} `
            # gives what splitting at the last `}` gave: when another `}` follows, it lands in the numbers,
            # which then fail their grammar, as the old split failed on a `}` not followed by a space.
            head, brace, rest = line.rpartition("} ")
            if brace:
                parsed = heads.get(head)
                if parsed is None:
                    parsed = _remember(heads, head, _head(head + "}"))
            else:  # no `} `: `name numbers`, or a line that _head or the number grammar refuses
                head, _, rest = line.partition(" ")
                parsed = bare_heads.get(head)
                if parsed is None:
                    parsed = _remember(bare_heads, head, _head(head))
            if not parsed:
                return None
            name, labels, series = parsed
            see(series)  # a series given twice shows as fewer series than samples, at the end
            numbers = rests.get(rest)
            if numbers is None:
                numbers = rests[rest] = _numbers(rest)  # type: ignore[assignment]
                if numbers is None:
                    return None
            value, timestamp = numbers
            append((name, labels, value, timestamp))
    except (ValueError, OverflowError, ZeroDivisionError):  # e.g. a huge integer timestamp: the reference decides
        return None
    if len(seen) != len(found):
        return None  # a series given twice: the reference's to judge
    return found or None


def _numbers(rest: str) -> tuple[Any, Any] | None:
    """The value and timestamp (seconds) of the text after a head, as the reference reads them, or None outside
    the subset. Plain digits are the common case and need no regex."""
    value, _, timestamp = rest.partition(" ")
    number = _number_in_subset(value)
    if number is None:
        return None
    if not timestamp:
        return number, None
    stamp = _number_in_subset(timestamp)
    if stamp is None:
        return None
    return number, stamp / 1000


def _number_in_subset(text: str) -> int | float | None:
    if text.isdigit():
        return int(text)
    if _NUMBER_RE.fullmatch(text):
        # What the reference's int()-then-float() gives: an int for a signed integer, else a float.
        return int(text) if text[0] in "+-" and text[1:].isdigit() else float(text)
    return None


def _head(head: str) -> tuple[str, dict[str, str], str] | bool:
    """A sample's name, labels and series key (the same for the same labels in another order) from the
    text before its numbers, or False outside the subset."""
    if not (head.isascii() and head.isprintable()):
        return False  # tabs, CR, non-ASCII: the reference's whitespace handling decides
    brace = head.find("{")
    if brace < 0:
        name, labels = head, {}
    elif head[-1] != "}":
        return False
    else:
        name, labels_text = head[:brace], head[brace + 1:-1]
        labels = _labels(labels_text) if labels_text else {}
        if labels is None:
            return False
    if not _VALID_NAME.fullmatch(name):
        return False
    return name, labels, repr((name, sorted(labels.items())))


def _remember(cache: dict, key: str, value):  # type: ignore[no-untyped-def]
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _labels(text: str) -> dict[str, str] | None:
    """The label set of a sample, or None outside the subset or where the reference's rules apply
    (reserved or duplicate names)."""
    if not _LABELS.fullmatch(text):
        return None
    labels: dict[str, str] = {}
    pairs = _PAIR.findall(text)
    for key, value in pairs:
        if key.startswith("__"):
            return None  # __name__ or a reserved name
        labels[key] = _ESCAPE.sub(_unescape, value) if "\\" in value else value
    return labels if len(labels) == len(pairs) else None  # a duplicate name: the reference raises


def _comment_in_subset(line: str) -> bool:
    """A comment the reference skips, or a HELP/TYPE line it accepts without renaming samples."""
    if '"' in line or not _PRINTABLE.fullmatch(line):
        return False  # quotes change how the reference splits the line; other whitespace too
    parts = line.split(None, 3)
    if len(parts) < 2 or parts[1] not in ("HELP", "TYPE"):
        return True
    if len(parts) == 2:
        return parts[1] == "HELP"  # a bare "# TYPE" is an error
    if not _VALID_NAME.fullmatch(parts[2]):
        return False
    if parts[1] == "HELP":
        return True
    if len(parts) < 4:
        return False
    # A counter TYPE without `_total` makes the reference rename its samples, and one named `_total` leaves
    # it an empty family name (an error): leave both to it.
    return parts[3] in _TYPES or (parts[3] == "counter" and parts[2].endswith("_total") and parts[2] != "_total")


def _unescape(m: re.Match[str]) -> str:
    return _UNESCAPE[m.group(0)]

