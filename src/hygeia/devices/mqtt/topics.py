"""The MQTT topic layout: what a topic says about its gateway and device.

Gateways publish observations to ``hygeia/{gateway}/{device}/obs`` and their
status, retained, to ``hygeia/{gateway}/status``; errors about a payload go back
on ``hygeia/{gateway}/{device}/error``. With ``--mqtt-topic`` another filter
replaces ``hygeia/+/+/obs``: its last three levels must still be
``{gateway}/{device}/obs`` (``+/+/obs``), and everything before them is the
prefix of the status and error topics too (``site-1/hygeia/+/+/obs`` ->
``site-1/hygeia/+/status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hygeia.fhir.outcome import BadRequest

DEFAULT_FILTER = "hygeia/+/+/obs"
# a gateway or device name longer than this is refused (it becomes an identifier value)
MAX_NAME = 128


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """Where observations, statuses and errors are published, from one filter."""

    observations: str  # the subscription filter, "hygeia/+/+/obs"
    # the levels before "{gateway}", with a trailing slash (or ""): read for every message
    prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.observations[:-len("+/+/obs")])

    @classmethod
    def from_filter(cls, topic_filter: str) -> TopicLayout:
        """Check a ``--mqtt-topic`` value; ValueError says what a valid one looks like."""
        levels = topic_filter.split("/")
        if len(levels) < 3 or levels[-3:] != ["+", "+", "obs"] or \
                any("#" in level or "+" in level for level in levels[:-3]):
            raise ValueError(f"'{topic_filter}': the filter must end in +/+/obs "
                             "(gateway, device, obs), like the default "
                             f"{DEFAULT_FILTER}, with no other wildcard")
        return cls(topic_filter)

    @property
    def statuses(self) -> str:
        return f"{self.prefix}+/status"

    def status_topic(self, gateway: str) -> str:
        return f"{self.prefix}{gateway}/status"

    def error_topic(self, gateway: str, device: str) -> str:
        return f"{self.prefix}{gateway}/{device}/error"

    def observation_source(self, topic: str) -> tuple[str, str]:
        """(gateway, device) of an observation topic; BadRequest for a bad name."""
        gateway, device = topic[len(self.prefix):].split("/")[:2]
        return check_name(gateway, "gateway"), check_name(device, "device")

    def status_gateway(self, topic: str) -> str:
        return check_name(topic[len(self.prefix):].split("/")[0], "gateway")

    def is_status(self, topic: str) -> bool:
        rest = topic[len(self.prefix):].split("/") if topic.startswith(self.prefix) else []
        return len(rest) == 2 and rest[1] == "status"


def check_name(name: str, what: str) -> str:
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise BadRequest(f"The {what} name in the topic must be 1 to {MAX_NAME} printable "
                         f"characters, not {name[:MAX_NAME]!r}.", expression="topic")
    return name
