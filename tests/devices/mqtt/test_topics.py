"""The topic layout (devices/mqtt/topics.py)."""

from __future__ import annotations

import pytest

from hygeia.devices.mqtt.topics import TopicLayout
from hygeia.fhir.outcome import BadRequest


def test_the_default_layout() -> None:
    layout = TopicLayout.from_filter("hygeia/+/+/obs")
    assert layout.statuses == "hygeia/+/status"
    assert layout.observation_source("hygeia/gw/dev/obs") == ("gw", "dev")
    assert layout.error_topic("gw", "dev") == "hygeia/gw/dev/error"
    assert layout.is_status("hygeia/gw/status") and not layout.is_status("hygeia/gw/d/obs")


def test_a_filter_with_a_prefix_moves_every_topic() -> None:
    layout = TopicLayout.from_filter("site-1/hygeia/+/+/obs")
    assert layout.statuses == "site-1/hygeia/+/status"
    assert layout.status_gateway("site-1/hygeia/gw/status") == "gw"
    assert TopicLayout.from_filter("+/+/obs").statuses == "+/status"


@pytest.mark.parametrize("bad", ["hygeia/#", "hygeia/+/obs", "a/+/+/+/obs", "hygeia/+/+/data"])
def test_a_filter_not_ending_in_gateway_device_obs_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"\+/\+/obs"):
        TopicLayout.from_filter(bad)


def test_a_name_too_long_is_refused() -> None:
    with pytest.raises(BadRequest, match="gateway name"):
        TopicLayout.from_filter("hygeia/+/+/obs").observation_source(f"hygeia/{'g' * 200}/d/obs")
