"""Context variable types: the one place a received string becomes text, a number or a flag, and back.

A context variable has two faces. Rules compare its *typed* value (exact: integers and
``Decimal``, never floats). Everything that leaves the app — the transfer's headers, the operation
context, logs — carries the *text as the IVR sent it*: ``007`` stays ``007``, ``1.10`` stays
``1.10``, ``yes`` stays ``yes``. :func:`convert` gives the typed value of a received text;
:func:`to_text` is the one rendering of a typed value as text, for values that were never
received (rule operands, a value typed on the command line).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

Value = str | int | Decimal | bool

_INTEGER = re.compile(r"[+-]?[0-9]+")
#: A number as an IVR writes one: ASCII digits, a sign, a decimal point, an exponent. Python's
#: Decimal alone would also take "1_000", "Infinity" and other scripts' digits ("٣").
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_MAX_NUMBER_CHARS = 64  # keeps Decimal work bounded for hostile input


class TypeMismatch(ValueError):
    pass


def convert(type_: str, text: str) -> Value:
    """Convert a received string to the variable's type, or raise TypeMismatch."""
    if type_ == "text":
        return text
    stripped = text.strip()
    if type_ == "number":
        if not stripped or len(stripped) > _MAX_NUMBER_CHARS:
            raise TypeMismatch
        if _INTEGER.fullmatch(stripped):
            return int(stripped)
        if not _DECIMAL.fullmatch(stripped):
            raise TypeMismatch
        try:
            return Decimal(stripped)  # exact: 1.10 keeps its digits, no float rounding
        except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
            raise TypeMismatch from None
    if type_ == "boolean":
        folded = stripped.lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise TypeMismatch
    raise TypeMismatch


def to_text(value: Value) -> str:
    """A typed value as text: ``true``/``false`` for flags, numbers as written (``Decimal`` keeps its
    digits: ``1.10`` stays ``1.10``), text unchanged. A received value is forwarded as received
    instead; this is for values that have no received text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
