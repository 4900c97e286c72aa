"""Typed reads from raw apiserver JSON that record a FieldError instead of raising.

PingSources arrive as plain dicts; any field may hold any JSON type. Every read here returns a
usable zero value (like Go's decoder for an absent `omitempty` field) and, when the type is
wrong, remembers one FieldError, so validation goes on and reports every problem at once.
It never raises on bad input and never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mtping.model.errors import FieldError

EMPTY: Mapping[str, Any] = MappingProxyType({})
# Stands in for an object of the wrong type: its fields read as absent, but are not reported
# missing again, since the one error on the object itself already says it all.
MALFORMED: Mapping[str, Any] = MappingProxyType({})


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages such as 'got array'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class FieldReader:
    """Collects FieldErrors while reading; `errors` keeps them in the order found."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, reason: str) -> None:
        self.errors.append(FieldError(path, reason))

    def mapping(self, parent: Mapping[str, Any], field: str, path: str) -> Mapping[str, Any]:
        """The object at `field`: EMPTY when absent or null, MALFORMED when of the wrong type."""
        value = parent.get(field)
        if value is None:
            return EMPTY
        if isinstance(value, Mapping):
            return value
        self.fail(path, f"must be an object, got {json_type(value)}")
        return MALFORMED

    def string(self, parent: Mapping[str, Any], field: str, path: str) -> str:
        """The string at `field`; "" when absent, null or of the wrong type."""
        value = parent.get(field)
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        self.fail(path, f"must be a string, got {json_type(value)}")
        return ""

    def required_string(self, parent: Mapping[str, Any], field: str, path: str) -> str:
        """Like `string`, but an absent or empty value is an error too."""
        text = self.string(parent, field, path)
        if not text and isinstance(parent.get(field), str | None) and parent is not MALFORMED:
            self.fail(path, "missing")
        return text

    def integer(self, parent: Mapping[str, Any], field: str, path: str) -> int:
        """The integer at `field`; 0 when absent, null or of the wrong type."""
        value = parent.get(field)
        if value is None:
            return 0
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.fail(path, f"must be an integer, got {json_type(value)}")
        return 0
