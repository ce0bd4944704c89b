"""Context variable types: the one place a received string becomes text, a number or a flag."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

Value = str | int | Decimal | bool

_INTEGER = re.compile(r"[+-]?[0-9]+")
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
        try:
            number = Decimal(stripped)
        except InvalidOperation:
            raise TypeMismatch from None
        if not number.is_finite():  # NaN/Infinity are not numbers an IVR means
            raise TypeMismatch
        return number
    if type_ == "boolean":
        folded = stripped.lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise TypeMismatch
    raise TypeMismatch
