"""The PingSource model: raw apiserver JSON in, immutable validated PingSourceSpec out.

Pure: imports no I/O layer, does no I/O, reads no clock.
"""

from mtping.model.errors import FieldError, InvalidSource
from mtping.model.parse import parse_source, read_status, source_key
from mtping.model.source import (
    Limits,
    ObservedStatus,
    PingSourceSpec,
    Sink,
    SinkRef,
    SourceKey,
)

__all__ = [
    "FieldError",
    "InvalidSource",
    "Limits",
    "ObservedStatus",
    "PingSourceSpec",
    "Sink",
    "SinkRef",
    "SourceKey",
    "parse_source",
    "read_status",
    "source_key",
]
