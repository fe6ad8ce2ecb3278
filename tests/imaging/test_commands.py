"""``hygeia imaging ae ...``: registering DICOM peers, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

from tests.imaging.conftest import hygeia


def test_peers_are_added_updated_listed_and_removed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/peers.db"
    assert hygeia("db", "migrate", "--db", db).returncode == 0
    added = hygeia("imaging", "ae", "add", "PACS", "10.0.0.5", "104", "--db", db)
    assert (added.returncode, added.stdout.strip()) == (0, "registered PACS at 10.0.0.5:104")
    again = hygeia("imaging", "ae", "add", "PACS", "10.0.0.6", "11112", "--patient-system",
                   "urn:oid:1.2.3", "--db", db)
    assert again.stdout.strip() == \
        "registered PACS at 10.0.0.6:11112, PatientIDs in urn:oid:1.2.3"
    listed = hygeia("imaging", "ae", "list", "--db", db)
    assert listed.stdout.splitlines() == ["PACS\t10.0.0.6:11112\turn:oid:1.2.3"]
    assert hygeia("imaging", "ae", "remove", "PACS", "--db", db).stdout.strip() == \
        "removed PACS"
    assert "no AE titles registered" in hygeia("imaging", "ae", "list", "--db", db).stdout


def test_bad_input_is_one_error_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/peers.db"
    assert hygeia("db", "migrate", "--db", db).returncode == 0
    for args, message in [
            (("ae", "add", "A" * 17, "host", "104"), "must be 1 to 16 printable"),
            (("ae", "add", "PACS", "host", "70000"), "out of range"),
            (("ae", "remove", "NOBODY"), "no AE title 'NOBODY'")]:
        result = hygeia("imaging", *args, "--db", db)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], \
            result.stderr
