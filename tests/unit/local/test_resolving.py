"""LocalResolver: --sink override, else an absolute sink.uri, else the reason it cannot fire."""

from __future__ import annotations

from typing import Any

import pytest

from mtping.delivery import Target
from mtping.local.resolving import NEEDS_SINK, LocalResolver
from mtping.model import parse_source
from mtping.resolving import Unresolved

REF = {"apiVersion": "v1", "kind": "Service", "name": "display"}


def spec_with(sink: dict[str, Any]) -> Any:
    return parse_source(
        {"metadata": {"namespace": "default", "name": "p", "uid": "u"}, "spec": {"sink": sink}}
    )


@pytest.mark.parametrize(
    ("override", "sink", "expected"),
    [
        (
            None,
            {"uri": "https://a.example/x", "audience": "aud"},
            Target("https://a.example/x", None, "aud"),
        ),
        (None, {"ref": REF}, Unresolved(NEEDS_SINK)),
        (None, {"ref": REF, "uri": "/path"}, Unresolved(NEEDS_SINK)),
        ("http://127.0.0.1:8080/", {"ref": REF}, Target("http://127.0.0.1:8080/")),
        (
            "http://127.0.0.1:8080/",
            {"uri": "https://a.example/", "audience": "a"},
            Target("http://127.0.0.1:8080/"),
        ),
    ],
)
def test_resolve(override: str | None, sink: dict[str, Any], expected: object) -> None:
    assert LocalResolver(override).resolve(spec_with(sink)) == expected
