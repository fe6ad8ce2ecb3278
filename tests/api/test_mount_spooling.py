"""Mounts that spool their bodies (``spools_body``): the limits the front end applies."""

from __future__ import annotations

from hygeia.api.http import HttpLimits
from hygeia.server import Settings
from hygeia.server.context import HttpSettings

MB = 1024 * 1024


def settings(max_body_mb: int, max_buffered_mb: int) -> Settings:
    return Settings(max_body_bytes=max_body_mb * MB,
                    http=HttpSettings(max_buffered_bytes=max_buffered_mb * MB))


def test_a_spooled_mounts_limit_does_not_raise_the_memory_budget() -> None:
    limits = HttpLimits.from_settings(settings(4, 8), (("/dicomweb", 4096 * MB),),
                                      ("/dicomweb",))
    assert limits.max_buffered_bytes == 8 * MB  # bodies held in memory: 8 MB at most
    assert limits.body_limit("/dicomweb/studies") == 4096 * MB
    assert limits.spools("/dicomweb/studies") and limits.spools("/dicomweb")
    assert not limits.spools("/dicomwebx") and not limits.spools("/fhir/Patient")


def test_a_mount_held_in_memory_still_fits_whole() -> None:
    limits = HttpLimits.from_settings(settings(4, 8), (("/cds-services", 32 * MB),))
    assert limits.max_buffered_bytes == 32 * MB
    assert not limits.spools("/cds-services/x")
