"""The archive on each backend: storing (content-addressed, idempotent, refusing malformed
files with a reason and storing nothing), DICOM matching on the index, deleting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from hygeia.imaging.archive import Archive, Malformed
from tests.imaging.conftest import bundled, make_instance, make_study


def stored_files(archive: Archive) -> list[Path]:
    return sorted(path for path in (archive.root / "objects").rglob("*") if path.is_file())


def test_an_instance_is_stored_content_addressed_and_read_back_byte_identical(
        archive: Archive, tmp_path: Path) -> None:
    path = make_instance(tmp_path, PatientID="P-1")
    data = path.read_bytes()
    stored = archive.store_bytes(data, source_ae="CT1")
    assert stored.created and stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    [file] = stored_files(archive)
    assert file.name == stored.sha256 and file.parent.name == stored.sha256[2:4]
    record = archive.instance(stored.sop_instance)
    assert record is not None and record.study_uid == stored.study_uid
    with archive.open(record) as handle:
        assert handle.read() == data
    assert list((archive.root / "incoming").iterdir()) == []


def test_the_same_sop_instance_twice_is_idempotent(archive: Archive, tmp_path: Path) -> None:
    data = make_instance(tmp_path).read_bytes()
    first = archive.store_bytes(data)
    again = archive.store_stream(iter([data[:1000], data[1000:]]))
    assert first.created and not again.created and again.sha256 == first.sha256
    [study] = archive.find_studies({"StudyInstanceUID": first.study_uid})
    assert study.instance_count == 1 and study.series_count == 1
    assert len(stored_files(archive)) == 1


def test_a_resent_instance_with_other_bytes_keeps_the_first_copy(
        archive: Archive, tmp_path: Path) -> None:
    path = make_instance(tmp_path, PatientID="FIRST")
    first = archive.store_bytes(path.read_bytes())
    dataset = pydicom.dcmread(path)
    dataset.PatientID = "SECOND"
    dataset.save_as(path)
    again = archive.store_bytes(path.read_bytes())
    assert not again.created and again.sha256 == first.sha256
    assert [s.patient_id for s in archive.find_studies({})] == ["FIRST"]
    assert len(stored_files(archive)) == 1


def test_store_incoming_takes_over_a_file_written_in_place(archive: Archive,
                                                           tmp_path: Path) -> None:
    data = make_instance(tmp_path).read_bytes()
    target = archive.incoming_path()
    target.write_bytes(data)
    stored = archive.store_incoming(target)
    assert stored.created and not target.exists()
    assert stored_files(archive)[0].read_bytes() == data


def _truncated(path: Path) -> bytes:
    return path.read_bytes()[:-1000]


def _without_study_uid(path: Path) -> bytes:
    dataset = pydicom.dcmread(path)
    del dataset.StudyInstanceUID
    dataset.save_as(path)
    return path.read_bytes()


def _bad_uid(path: Path) -> bytes:
    dataset = pydicom.dcmread(path)
    dataset.SeriesInstanceUID = "1.2.abc"
    dataset.save_as(path)
    return path.read_bytes()


def _unknown_syntax(path: Path) -> bytes:
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    dataset.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _not_dicom(path: Path) -> bytes:
    return b"%PDF-1.4 not a DICOM file at all" * 10


def _no_pixels(path: Path) -> bytes:
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    return path.read_bytes()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(("spoil", "reason"), [
    (_truncated, "truncated"), (_without_study_uid, "no StudyInstanceUID"),
    (_bad_uid, "not a valid DICOM UID"), (_unknown_syntax, "transfer syntax"),
    (_not_dicom, "not a DICOM Part 10 file"), (_no_pixels, "no pixel data")])
def test_malformed_files_are_refused_with_a_reason_and_nothing_is_stored(
        archive: Archive, tmp_path: Path, spoil: object, reason: str) -> None:
    data = spoil(make_instance(tmp_path))  # type: ignore[operator]
    with pytest.raises(Malformed, match=reason):
        archive.store_bytes(data)
    assert stored_files(archive) == []
    assert list((archive.root / "incoming").iterdir()) == []
    assert archive.find_studies({}) == [] and archive.find_instances({}) == []


def test_studies_are_matched_on_the_dicom_keys(archive: Archive, tmp_path: Path) -> None:
    a = archive.store_bytes(make_instance(
        tmp_path, PatientID="PID-A", PatientName="Doe^John", StudyDate="20240110",
        AccessionNumber="ACC-1").read_bytes())
    b = archive.store_bytes(make_instance(
        tmp_path, "MR_small.dcm", PatientID="PID-B", PatientName="Smith^Anna^Maria",
        StudyDate="20240220", AccessionNumber="ACC-2").read_bytes())

    def uids(**filters: str) -> set[str]:
        fuzzy = filters.pop("fuzzy", "") == "yes"
        return {s.study_uid for s in archive.find_studies(filters, fuzzy=fuzzy)}

    assert uids() == {a.study_uid, b.study_uid}
    assert uids(PatientID="PID-A") == {a.study_uid}
    assert uids(PatientID="PID-*") == {a.study_uid, b.study_uid}
    assert uids(StudyDate="20240201-") == {b.study_uid}
    assert uids(StudyDate="-20240131") == {a.study_uid}
    assert uids(StudyDate="20240101-20240301") == {a.study_uid, b.study_uid}
    assert uids(StudyDate="20240110") == {a.study_uid}
    assert uids(ModalitiesInStudy="MR") == {b.study_uid}
    assert uids(ModalitiesInStudy="CT\\MR") == {a.study_uid, b.study_uid}
    assert uids(AccessionNumber="ACC-2") == {b.study_uid}
    assert uids(PatientName="doe*") == {a.study_uid}
    assert uids(PatientName="Smith^Anna^Maria") == {b.study_uid}
    assert uids(PatientName="Smith") == set()  # exact without wildcard
    assert uids(PatientName="ann smi", fuzzy="yes") == {b.study_uid}
    assert uids(PatientName="jo", fuzzy="yes") == {a.study_uid}
    assert uids(PatientName="mar", fuzzy="yes") == {b.study_uid}
    assert uids(StudyInstanceUID=f"{a.study_uid}\\{b.study_uid}") == {a.study_uid,
                                                                      b.study_uid}
    assert uids(StudyInstanceUID=f"{a.study_uid},1.2.3") == {a.study_uid}
    assert uids(PatientID="PID-A", ModalitiesInStudy="MR") == set()
    assert [s.study_uid for s in archive.find_studies({}, limit=1, offset=1)] == \
        sorted([a.study_uid, b.study_uid])[1:]


def test_fuzzy_names_match_word_starts_only_and_take_like_characters_literally(
        archive: Archive, tmp_path: Path) -> None:
    names = {"Doe^John": None, "O_Brien%^Jo!e": None, "Obrien^Joe": None,
             "Lee^Ann Marie": None}
    for name in names:
        names[name] = archive.store_bytes(make_instance(
            tmp_path, PatientName=name).read_bytes()).study_uid

    def fuzzy(value: str) -> set[str | None]:
        found = {s.study_uid for s in archive.find_studies({"PatientName": value},
                                                           fuzzy=True)}
        return {name for name, uid in names.items() if uid in found}

    assert fuzzy("ohn") == set()  # inside a word, not at its start
    assert fuzzy("o_") == {"O_Brien%^Jo!e"}  # "_" is not LIKE's any character
    assert fuzzy("o_brien% jo!") == {"O_Brien%^Jo!e"}
    assert fuzzy("jo o") == {"O_Brien%^Jo!e", "Obrien^Joe"}
    assert fuzzy("JO DOE") == {"Doe^John"}
    assert fuzzy("mar le") == {"Lee^Ann Marie"}  # words split on "^" and spaces alike
    assert fuzzy("ann ann") == {"Lee^Ann Marie"}  # two query words, one name word
    assert fuzzy("ann doe") == set()
    assert fuzzy("*") == set(names)  # no word: universal matching
    # the same condition at the series and instance levels
    assert {s.study_uid for s in archive.find_series({"PatientName": "jo o"}, fuzzy=True)} \
        == {names["O_Brien%^Jo!e"], names["Obrien^Joe"]}
    assert [i.study_uid for i in archive.find_instances({"PatientName": "do"}, fuzzy=True)] \
        == [names["Doe^John"]]


def test_series_and_instances_are_listed_with_their_counts_and_dicom_json(
        archive: Archive, tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "s", 3, PatientID="PID-S")
    for path in paths:
        archive.store_bytes(path.read_bytes())
    [record] = archive.find_studies({"StudyInstanceUID": study})
    assert (record.series_count, record.instance_count, record.modalities) == (1, 3, ("CT",))
    data = record.json()
    assert data["00201208"]["Value"] == [3] and data["00080061"]["Value"] == ["CT"]
    [series] = archive.find_series({"StudyInstanceUID": study})
    assert series.instance_count == 3 and series.json()["00100020"]["Value"] == ["PID-S"]
    instances = archive.find_instances({"StudyInstanceUID": study,
                                        "SeriesInstanceUID": series.series_uid})
    assert len(instances) == 3
    assert {i.json()["00080016"]["Value"][0] for i in instances} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert archive.find_instances({"SOPInstanceUID": instances[0].sop_uid})[0].sop_uid == \
        instances[0].sop_uid
    assert archive.find_series({"Modality": "MR"}) == []


def test_deleting_a_study_removes_its_rows_and_files_only(archive: Archive,
                                                          tmp_path: Path) -> None:
    gone, paths = make_study(tmp_path / "a", 2)
    kept, others = make_study(tmp_path / "b", 1)
    for path in [*paths, *others]:
        archive.store_bytes(path.read_bytes())
    assert len(stored_files(archive)) == 3
    deleted = archive.delete_study(gone)
    assert (deleted.instances, deleted.files) == (2, 2)
    assert [s.study_uid for s in archive.find_studies({})] == [kept]
    assert len(stored_files(archive)) == 1
    assert archive.delete_study(gone).instances == 0


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "JPEG2000.dcm", "rtplan.dcm",
                                  "SC_rgb.dcm", "US1_J2KR.dcm", "emri_small.dcm",
                                  "waveform_ecg.dcm"])
def test_bundled_files_of_other_kinds_and_transfer_syntaxes_are_stored(
        archive: Archive, name: str) -> None:
    data = bundled(name).read_bytes()
    stored = archive.store_bytes(data)
    assert stored.created
    record = archive.instance(stored.sop_instance)
    assert record is not None and record.transfer_syntax == str(
        pydicom.dcmread(bundled(name)).file_meta.TransferSyntaxUID)


def test_files_stored_together_have_each_their_own_outcome(
        archive: Archive, tmp_path: Path) -> None:
    held = make_instance(tmp_path, PatientName="Held^Before").read_bytes()
    first = archive.store_bytes(held)
    new = make_instance(tmp_path, PatientName="New^One").read_bytes()
    twice = make_instance(tmp_path, PatientName="Twice^Sent").read_bytes()
    stored: list[str] = []
    archive.after_store.append(lambda s: stored.append(s.sop_instance))

    def incoming(data: bytes) -> Path:
        path = archive.incoming_path()
        path.write_bytes(data)
        return path

    outcomes = archive.store_incoming_many(
        [incoming(new), incoming(b"DICM? no"), incoming(held), incoming(twice),
         incoming(twice), incoming(new[:300])])
    assert [type(o).__name__ for o in outcomes] == \
        ["Stored", "Malformed", "Stored", "Stored", "Stored", "Malformed"]
    made, _, again, once, repeat, _ = outcomes
    assert made.created and once.created  # type: ignore[union-attr]
    assert not again.created and again.sha256 == first.sha256  # type: ignore[union-attr]
    assert not repeat.created and repeat.sha256 == once.sha256  # type: ignore[union-attr]
    assert stored == [made.sop_instance, once.sop_instance]  # type: ignore[union-attr]
    assert len(stored_files(archive)) == 3
    assert list((archive.root / "incoming").iterdir()) == []
    assert {s.patient_name for s in archive.find_studies({})} == \
        {"Held^Before", "New^One", "Twice^Sent"}
