"""Where a local source's events go when there is no cluster to look sinks up in.

`--sink URL` (or the built-in display, which is one) sends every source there; otherwise an
absolute `spec.sink.uri` is used as written. A `ref` names an object only a cluster can
resolve, so without `--sink` such a source is reported and skipped, never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mtping.delivery import Target
from mtping.model import PingSourceSpec
from mtping.resolving import Unresolved

NEEDS_SINK: Final = "ref sinks need --sink in local mode"


@dataclass(frozen=True, slots=True)
class LocalResolver:
    sink: str | None = None
    """The `--sink` override; None: use each source's absolute `sink.uri`."""

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        if self.sink:
            # The source's CACerts and audience describe its own sink, not this one.
            return Target(self.sink)
        if spec.sink.ref is None and spec.sink.uri:
            return Target(spec.sink.uri, spec.sink.ca_certs, spec.sink.audience)
        return Unresolved(NEEDS_SINK)
