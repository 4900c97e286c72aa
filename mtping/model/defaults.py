"""Cluster-wide PingSource defaults: the `config-ping-defaults` ConfigMap's data as Limits.

Same name, namespace and keys as Knative's ConfigMap, read the same way: `data-max-size` is a
whole number of bytes, and any negative value (Knative's "-1") means no limit. The result is
held in a `LimitsHolder` that the admission webhook and the registry's parser both read at call
time, so one ConfigMap change reaches both at once. Pure: parses a dict, never reads the
ConfigMap itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mtping.model.source import Limits

CONFIG_MAP_NAME = "config-ping-defaults"
DATA_MAX_SIZE = "data-max-size"


class InvalidDefaults(ValueError):
    """The ConfigMap holds a value mtping cannot use; the previous Limits stay in force."""


def limits_from_config(data: Mapping[str, str] | None) -> Limits:
    """Limits from the ConfigMap's `data`; no ConfigMap, or no key, means unlimited."""
    raw = (data or {}).get(DATA_MAX_SIZE, "").strip()
    if not raw:
        return Limits()
    try:
        size = int(raw)
    except ValueError:
        raise InvalidDefaults(
            f"{CONFIG_MAP_NAME} {DATA_MAX_SIZE}: not a whole number of bytes: {raw!r}"
        ) from None
    return Limits(max_data_bytes=None if size < 0 else size)


@dataclass(slots=True)
class LimitsHolder:
    """The Limits in force now; `get` is handed to every parser so they read it per call."""

    current: Limits = field(default_factory=Limits)

    def get(self) -> Limits:
        return self.current
