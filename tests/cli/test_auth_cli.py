"""``hygeia auth client``: what registration refuses, in one error line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.smart import cli_json, hygeia


@pytest.mark.parametrize(("extra", "said"), [
    (("--scopes", "system/Foo.read"), "not a FHIR R4 resource type"),
    (("--scopes", "system/Patient.xyz"), "is not a SMART scope"),
    (("--scopes", "system/*.rs", "--jwks-url", "file:///etc/passwd"), "not an http or https"),
])
def test_registration_refuses_bad_scopes_and_urls(tmp_path: Path, extra: tuple[str, ...],
                                                  said: str) -> None:
    result = hygeia("auth", "client", "create", "--db", f"sqlite:///{tmp_path}/a.db",
                    "--name", "x", *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines


def test_a_client_registered_by_jwks_url_is_confidential(tmp_path: Path) -> None:
    made = cli_json("auth", "client", "create", "--db", f"sqlite:///{tmp_path}/a.db",
                    "--name", "x", "--scopes", "system/*.read", "--jwks-url",
                    "https://keys.example.org/jwks.json")
    assert made["kind"] == "confidential" and made["scopes"] == "system/*.read"
