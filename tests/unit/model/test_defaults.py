"""config-ping-defaults data read as Knative reads it: data-max-size in bytes, negative = none."""

from __future__ import annotations

import pytest

from mtping.model import Limits
from mtping.model.defaults import InvalidDefaults, LimitsHolder, limits_from_config


@pytest.mark.parametrize(
    ("data", "limit"),
    [
        pytest.param(None, None, id="no-configmap"),
        pytest.param({}, None, id="no-key"),
        pytest.param({"data-max-size": "-1"}, None, id="knative-unlimited"),
        pytest.param({"data-max-size": "-7"}, None, id="any-negative"),
        pytest.param({"data-max-size": " 4096 "}, 4096, id="bytes"),
        pytest.param({"data-max-size": "0"}, 0, id="zero"),
        pytest.param({"data-max-size": "", "_example": "data-max-size: 5"}, None, id="blank"),
    ],
)
def test_data_max_size_becomes_the_limit(data: dict[str, str] | None, limit: int | None) -> None:
    assert limits_from_config(data) == Limits(max_data_bytes=limit)


@pytest.mark.parametrize("raw", ["1k", "1.5", "lots"])
def test_a_value_that_is_not_a_whole_number_is_refused(raw: str) -> None:
    with pytest.raises(InvalidDefaults, match="data-max-size: not a whole number"):
        limits_from_config({"data-max-size": raw})


def test_the_holder_hands_out_what_it_holds_now() -> None:
    holder = LimitsHolder()
    read = holder.get
    assert read() == Limits()
    holder.current = Limits(max_data_bytes=3)
    assert read() == Limits(max_data_bytes=3)
