"""The MQTT flags of ``hygeia serve``: a mistake is one ``error:`` line, before serving."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hygeia.devices.mqtt.listener import BrokerAddress


@pytest.mark.parametrize(("flags", "message"), [
    (("--mqtt-url", "http://127.0.0.1:1883"), "is not a broker URL"),
    (("--mqtt-url", "mqtt://127.0.0.1:99999"), "is not a broker URL"),
    (("--mqtt-url", "mqtt://127.0.0.1", "--mqtt-topic", "hygeia/#"), "must end in +/+/obs"),
    (("--mqtt-url", "mqtt://127.0.0.1", "--mqtt-session-expiry", "-1"), "whole seconds"),
    (("--mqtt-url", "mqtt://127.0.0.1", "--mqtt-storers", "0"), "1 to 8"),
    (("--mqtt-url", "mqtt://127.0.0.1", "--mqtt-storers", "two"), "1 to 8"),
])
def test_a_bad_mqtt_flag_is_one_error_line(flags: tuple[str, ...], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "hygeia.cli.main", "serve", *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_broker_url_may_carry_a_user_and_password() -> None:
    assert BrokerAddress.parse("mqtt://gw%40site:s3cret@broker.example:8883") == \
        BrokerAddress("broker.example", 8883, "gw@site", "s3cret")
    assert BrokerAddress.parse("mqtt://10.0.0.5").port == 1883
