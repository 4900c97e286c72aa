"""Errors of the model layer: what is wrong with a PingSource, field by field.

A PingSource is user input. Validation reports every problem it finds at once, each naming the
JSON path of the offending field, so one `kubectl describe` shows the user the whole list.
This module only describes errors; it never validates, logs or touches the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mtping.model.source import SourceKey


class FieldError(NamedTuple):
    """One problem with one field: `path` is a JSON path such as `spec.sink.uri`."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class InvalidSource(ValueError):
    """A PingSource that cannot be fired; `errors` lists every problem found, in field order."""

    key: SourceKey | None
    errors: tuple[FieldError, ...]

    def __init__(self, key: SourceKey | None, errors: tuple[FieldError, ...]) -> None:
        self.key = key
        self.errors = errors
        super().__init__(_message(key, errors))

    def __reduce__(
        self,
    ) -> tuple[type[InvalidSource], tuple[SourceKey | None, tuple[FieldError, ...]]]:
        # ValueError pickles its message only; keep the structured fields across processes.
        return (type(self), (self.key, self.errors))


def _message(key: SourceKey | None, errors: tuple[FieldError, ...]) -> str:
    who = f"PingSource {key.namespace}/{key.name}" if key else "PingSource"
    return f"{who} is invalid: " + "; ".join(str(error) for error in errors)
