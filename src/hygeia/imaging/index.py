"""The index: rows of :mod:`.tables` written as instances arrive, and DICOM matching on them.

Matching follows DICOM's query semantics (PS3.4 C.2.2.2), which QIDO-RS reuses:
a key's value is matched as

- a list of UIDs (``1.2.3\\1.2.4``) for ``*InstanceUID`` and ``SOPClassUID`` keys;
- a range (``20240101-20240131``, ``-20240131``, ``20240101-``) or one date for
  ``StudyDate`` and ``PatientBirthDate``;
- a wildcard (``*`` any run, ``?`` one character) or an exact value otherwise;
  ``PatientName`` is compared in upper case, and with ``fuzzy`` each word of the
  query matches the start of a word of the name (``joh do`` finds ``Doe^John``);
- a list (``CT\\MR``) for ``ModalitiesInStudy`` and ``Modality``.

An empty value matches everything (DICOM's universal matching). Keys the index
has no column for are not matched (:data:`STUDY_KEYS` ... list those it has):
callers answer them as DICOM does, by returning the attribute when they have it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from hygeia.imaging.parsing import Parsed, json_text

# DICOM keyword -> (table alias, column, kind)
STUDY_KEYS: dict[str, tuple[str, str, str]] = {
    "StudyInstanceUID": ("t", "study_uid", "uid"),
    "PatientID": ("t", "patient_id", "text"),
    "PatientName": ("t", "name_key", "name"),
    "PatientBirthDate": ("t", "birth_date", "date"),
    "PatientSex": ("t", "sex", "text"),
    "StudyDate": ("t", "study_date", "date"),
    "AccessionNumber": ("t", "accession", "text"),
    "StudyID": ("t", "study_id", "text"),
    "StudyDescription": ("t", "description", "text"),
    "ModalitiesInStudy": ("t", "study_uid", "modalities"),
}
SERIES_KEYS: dict[str, tuple[str, str, str]] = {
    "SeriesInstanceUID": ("s", "series_uid", "uid"),
    "Modality": ("s", "modality", "list"),
    "SeriesNumber": ("s", "series_number", "text"),
    "SeriesDescription": ("s", "description", "text"),
    "BodyPartExamined": ("s", "body_part", "text"),
}
INSTANCE_KEYS: dict[str, tuple[str, str, str]] = {
    "SOPInstanceUID": ("i", "sop_uid", "uid"),
    "SOPClassUID": ("i", "sop_class", "uid"),
    "InstanceNumber": ("i", "instance_number", "text"),
}
MAX_LIMIT = 10_000  # rows one query returns at most
_WORDS = re.compile(r"[\^=\s,]+")


def name_key(name: str) -> str:
    """A PatientName as the index compares it: upper case, components as stored."""
    return name.upper()


def name_words(name: str) -> list[str]:
    """The words of a PatientName (upper case), each indexed for fuzzy matching."""
    return sorted({word for word in _WORDS.split(name.upper()) if word})


def spaced(words: Sequence[str]) -> str:
    """Words between single spaces, a space at each end (`` DOE JOHN ``): a word starts
    a word of them exactly when `` WORD`` is in the text, whatever the separators of the
    PatientName they came from."""
    return f" {' '.join(words)} "


# ------------------------------------------------------------------ writing


def add_instance(session: Any, parsed: Parsed, sha256: str, size: int, source_ae: str,
                 now_us: int) -> bool:
    """Index one stored instance; False when its SOP Instance UID was indexed already
    (the first copy stays: the same UID is the same instance)."""
    inserted = session.execute(
        "INSERT INTO imaging_instance (sop_uid, series_uid, study_uid, sop_class, "
        "instance_number, transfer_syntax, sha256, size, attrs, stored_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sop_uid) DO NOTHING",
        (parsed.sop_instance, parsed.series_uid, parsed.study_uid, parsed.sop_class,
         parsed.text("instance", "InstanceNumber"), parsed.transfer_syntax, sha256, size,
         _dumps(parsed.instance), now_us)).rowcount
    if not inserted:
        return False
    new_study = _add_study(session, parsed, source_ae)
    new_series = session.execute(
        "INSERT INTO imaging_series (series_uid, study_uid, modality, series_number, "
        "description, body_part, instance_count, attrs) VALUES (?, ?, ?, ?, ?, ?, 0, ?) "
        "ON CONFLICT (series_uid) DO NOTHING",
        (parsed.series_uid, parsed.study_uid, parsed.text("series", "Modality"),
         parsed.text("series", "SeriesNumber"), parsed.text("series", "SeriesDescription"),
         parsed.text("series", "BodyPartExamined"), _dumps(parsed.series))).rowcount
    session.execute("UPDATE imaging_series SET instance_count = instance_count + 1 "
                    "WHERE series_uid = ?", (parsed.series_uid,))
    modalities = None
    if new_series or new_study:
        modalities = "\\".join(sorted({str(row[0]) for row in session.execute(
            "SELECT DISTINCT modality FROM imaging_series WHERE study_uid = ? "
            "AND modality <> ''", (parsed.study_uid,)).fetchall()}))
    session.execute(
        "UPDATE imaging_study SET instance_count = instance_count + 1, "
        "series_count = series_count + ?, modalities = COALESCE(?, modalities) "
        "WHERE study_uid = ?", (1 if new_series else 0, modalities, parsed.study_uid))
    session.execute(
        "INSERT INTO imaging_pending (study_uid, changes, first_at, changed_at, flush) "
        "VALUES (?, 1, ?, ?, 0) ON CONFLICT (study_uid) DO UPDATE SET "
        "changes = imaging_pending.changes + 1, changed_at = excluded.changed_at",
        (parsed.study_uid, now_us, now_us))
    return True


def _add_study(session: Any, parsed: Parsed, source_ae: str) -> bool:
    name = parsed.text("study", "PatientName")
    inserted = session.execute(
        "INSERT INTO imaging_study (study_uid, patient_id, patient_name, name_key, "
        "birth_date, sex, study_date, study_time, accession, study_id, description, "
        "modalities, series_count, instance_count, source_ae) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', 0, 0, ?) "
        "ON CONFLICT (study_uid) DO NOTHING",
        (parsed.study_uid, parsed.text("study", "PatientID"), name, name_key(name),
         parsed.text("study", "PatientBirthDate"), parsed.text("study", "PatientSex"),
         parsed.text("study", "StudyDate"), parsed.text("study", "StudyTime"),
         parsed.text("study", "AccessionNumber"), parsed.text("study", "StudyID"),
         parsed.text("study", "StudyDescription"), source_ae)).rowcount
    if inserted:
        session.execute("INSERT INTO imaging_study_attrs (study_uid, attrs) VALUES (?, ?) "
                        "ON CONFLICT (study_uid) DO NOTHING",
                        (parsed.study_uid, _dumps(parsed.study)))
        words = name_words(name)
        if words:
            session.execute_many(
                "INSERT INTO imaging_name_index (word, words, study_uid) VALUES (?, ?, ?) "
                "ON CONFLICT (word, words, study_uid) DO NOTHING",
                [(word, spaced(words), parsed.study_uid) for word in words])
    return bool(inserted)


def remove_study(session: Any, study_uid: str) -> list[str]:
    """Drop a study's rows; the SHA-256 of each file no other instance still uses."""
    hashes = {str(row[0]) for row in session.execute(
        "SELECT sha256 FROM imaging_instance WHERE study_uid = ?", (study_uid,)).fetchall()}
    for table in ("imaging_instance", "imaging_series", "imaging_name_index", "imaging_study",
                  "imaging_study_attrs", "imaging_pending"):
        session.execute(f"DELETE FROM {table} WHERE study_uid = ?", (study_uid,))
    still_used = set()
    for sha256 in hashes:
        if session.execute("SELECT 1 FROM imaging_instance WHERE sha256 = ? LIMIT 1",
                           (sha256,)).fetchone() is not None:
            still_used.add(sha256)
    return sorted(hashes - still_used)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """One indexed study; :meth:`json` is its QIDO-RS/C-FIND answer as DICOM JSON."""

    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    attrs: dict[str, Any]
    source_ae: str = ""

    def json(self) -> dict[str, Any]:
        result = dict(self.attrs)
        result["00080061"] = {"vr": "CS", "Value": list(self.modalities)} if \
            self.modalities else {"vr": "CS"}
        result["00201206"] = {"vr": "IS", "Value": [self.series_count]}
        result["00201208"] = {"vr": "IS", "Value": [self.instance_count]}
        return result


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """One indexed series (its study's attributes included in :meth:`json`)."""

    series_uid: str
    study_uid: str
    modality: str
    series_number: str
    instance_count: int
    attrs: dict[str, Any]
    study_attrs: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        result = {**self.study_attrs, **self.attrs}
        result["0020000D"] = {"vr": "UI", "Value": [self.study_uid]}
        result["00201209"] = {"vr": "IS", "Value": [self.instance_count]}
        return result

    def text(self, keyword: str) -> str:
        return json_text(self.attrs, keyword)


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One indexed instance: where its file is (``sha256``) and what it is."""

    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class: str
    instance_number: str
    transfer_syntax: str
    sha256: str
    size: int
    attrs: dict[str, Any]
    series_attrs: dict[str, Any] = field(default_factory=dict)
    study_attrs: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        result = {**self.study_attrs, **self.series_attrs, **self.attrs}
        result["0020000D"] = {"vr": "UI", "Value": [self.study_uid]}
        result["0020000E"] = {"vr": "UI", "Value": [self.series_uid]}
        result["00083002"] = {"vr": "UI", "Value": [self.transfer_syntax]}
        return result

    def text(self, keyword: str) -> str:
        return json_text(self.attrs, keyword)


_STUDY_COLUMNS = ("t.study_uid, t.patient_id, t.patient_name, t.accession, t.study_date, "
                  "t.modalities, t.series_count, t.instance_count, a.attrs, t.source_ae")
_STUDY_TABLES = "imaging_study t JOIN imaging_study_attrs a ON a.study_uid = t.study_uid"
_SERIES_COLUMNS = ("s.series_uid, s.study_uid, s.modality, s.series_number, "
                   "s.instance_count, s.attrs")
_INSTANCE_COLUMNS = ("i.sop_uid, i.series_uid, i.study_uid, i.sop_class, i.instance_number, "
                     "i.transfer_syntax, i.sha256, i.size, i.attrs")


def _study(row: Sequence[Any]) -> StudyRecord:
    modalities = tuple(m for m in str(row[5]).split("\\") if m)
    return StudyRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]),
                       modalities, int(row[6]), int(row[7]), orjson.loads(row[8]),
                       str(row[9]))


def _series(row: Sequence[Any], study_attrs: Any = None) -> SeriesRecord:
    return SeriesRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]),
                        orjson.loads(row[5]),
                        orjson.loads(study_attrs) if study_attrs is not None else {})


def _instance(row: Sequence[Any], series_attrs: Any = None, study_attrs: Any = None
              ) -> InstanceRecord:
    return InstanceRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]),
                          str(row[5]), str(row[6]), int(row[7]), orjson.loads(row[8]),
                          orjson.loads(series_attrs) if series_attrs is not None else {},
                          orjson.loads(study_attrs) if study_attrs is not None else {})


# ------------------------------------------------------------------ matching


class Where:
    """Conditions and their parameters, built key by key."""

    def __init__(self, fuzzy: bool) -> None:
        self.fuzzy = fuzzy
        self.conditions: list[str] = []
        self.params: list[Any] = []
        # a condition an index narrows to few rows (a PatientID, a day or month of dates):
        # then the matches are read through that index and sorted, else the rows are
        # walked in UID order until a page is full (see _order)
        self.selective = False

    def add(self, keys: Mapping[str, tuple[str, str, str]], filters: Mapping[str, str]
            ) -> None:
        for keyword, value in filters.items():
            spec = keys.get(keyword)
            if spec is None or value is None or str(value).strip() in ("", "*"):
                continue
            alias, column, kind = spec
            if kind == "name" and self.fuzzy:
                self._fuzzy_name(".".join(keys["StudyInstanceUID"][:2]), str(value))
                continue
            getattr(self, f"_{kind}")(f"{alias}.{column}", str(value).strip())
            if (kind in ("uid", "text") and keyword != "PatientSex") or kind == "name":
                self.selective = True

    def sql(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "1 = 1"

    def _uid(self, column: str, value: str) -> None:
        uids = [uid.strip() for uid in re.split(r"[\\,]", value) if uid.strip()]
        self.conditions.append(f"{column} IN ({', '.join('?' * len(uids))})")
        self.params.extend(uids)

    def _list(self, column: str, value: str) -> None:
        self._uid(column, value)

    def _text(self, column: str, value: str) -> None:
        if "*" in value or "?" in value:
            self.conditions.append(f"{column} LIKE ? ESCAPE '!'")
            self.params.append(like_pattern(value))
        else:
            self.conditions.append(f"{column} = ?")
            self.params.append(value)

    def _fuzzy_name(self, study_column: str, value: str) -> None:
        """Each word of ``value`` starts a word of the name: the longest (likely the
        rarest) as a range of :data:`imaging_name_index`'s key, the others matched on
        that key's ``words``, so the studies come from one index range with no row
        read (walking the studies and probing each word took 51 ms p95 over 100,000
        studies on SQLite; ADR 0021)."""
        words = sorted(name_words(value.replace("*", "").replace("?", "")),
                       key=lambda word: (-len(word), word))
        if not words:
            return
        others = "".join(" AND w.words LIKE ? ESCAPE '!'" for _ in words[1:])
        self.conditions.append(
            f"{study_column} IN (SELECT w.study_uid FROM imaging_name_index w "
            f"WHERE w.word >= ? AND w.word < ?{others})")
        self.params.extend([words[0], words[0] + "\U0010ffff"])
        self.params.extend(f"% {like_escape(word)}%" for word in words[1:])

    def _name(self, column: str, value: str) -> None:
        value = name_key(value)
        prefix = re.split(r"[*?]", value, maxsplit=1)[0]
        if prefix and prefix != value:  # an indexed range narrows a trailing wildcard
            self.conditions.append(f"{column} >= ? AND {column} < ?")
            self.params.extend([prefix, prefix + "\U0010ffff"])
        self._text(column, value)

    def _date(self, column: str, value: str) -> None:
        value = value.replace(".", "")  # old ACR-NEMA dates 2024.01.31
        if "-" not in value:
            self.conditions.append(f"{column} = ?")
            self.params.append(value)
            self.selective = True
            return
        low, _, high = value.partition("-")
        if low and high and low[:4].isdigit() and high[:4].isdigit() and \
                int(high[:4]) - int(low[:4]) <= 1:
            self.selective = True  # a day, a month, a year: few rows of a big archive
        if low:
            self.conditions.append(f"{column} >= ?")
            self.params.append(low)
        if high:
            self.conditions.append(f"{column} <= ? AND {column} <> ''")
            self.params.append(high)

    def _modalities(self, column: str, value: str) -> None:
        modalities = [m.strip() for m in re.split(r"[\\,]", value) if m.strip()]
        self.conditions.append(
            f"EXISTS (SELECT 1 FROM imaging_series m WHERE m.study_uid = {column} AND "
            f"m.modality IN ({', '.join('?' * len(modalities))}))")
        self.params.extend(modalities)


def like_escape(value: str) -> str:
    """``value`` matched literally in a LIKE pattern with ``!`` as the escape character."""
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def like_pattern(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern with ``!`` as the escape character."""
    return like_escape(value).replace("*", "%").replace("?", "_")


def _page(limit: int | None, offset: int) -> tuple[str, list[int]]:
    """LIMIT/OFFSET: at most :data:`MAX_LIMIT` rows, or all with ``limit`` None (retrieval
    of a whole study; ``offset`` is then ignored)."""
    if limit is None:
        return "", []
    return " LIMIT ? OFFSET ?", [max(0, min(int(limit), MAX_LIMIT)), max(0, int(offset))]


def _order(session: Any, where: Where, columns: str) -> str:
    """ORDER BY ``columns``. On SQLite, with a selective condition, ``+column`` keeps the
    planner from walking the primary key in order and filtering (a month of 100,000
    studies: 244 ms p95) instead of reading the matches through the condition's index
    and sorting them; with broad ones (a modality, name words, an open date range) the
    walk fills a page soonest. PostgreSQL weighs both with its statistics."""
    if where.selective and getattr(session, "placeholder", "?") == "?":
        columns = ", ".join(f"+{column.strip()}" for column in columns.split(","))
    return f" ORDER BY {columns}"


def find_studies(session: Any, filters: Mapping[str, str], *, fuzzy: bool = False,
                 limit: int = 100, offset: int = 0) -> list[StudyRecord]:
    """Studies matching ``filters`` (DICOM keywords of :data:`STUDY_KEYS`), by UID."""
    where = Where(fuzzy)
    where.add(STUDY_KEYS, filters)
    page, params = _page(limit, offset)
    order = _order(session, where, "t.study_uid")
    # the page's UIDs first, from the indexes alone, then their rows: sorting thousands of
    # matches with their attributes cost 150 ms over 100,000 studies, their UIDs 3 ms
    uids = [str(row[0]) for row in session.execute(
        f"SELECT t.study_uid FROM imaging_study t WHERE {where.sql()}{order}{page}",
        [*where.params, *params]).fetchall()]
    if not uids:
        return []
    rows = session.execute(f"SELECT {_STUDY_COLUMNS} FROM {_STUDY_TABLES} WHERE t.study_uid "
                           f"IN ({', '.join('?' * len(uids))})", uids).fetchall()
    return sorted((_study(row) for row in rows), key=lambda record: record.study_uid)


def find_series(session: Any, filters: Mapping[str, str], *, fuzzy: bool = False,
                limit: int = 100, offset: int = 0) -> list[SeriesRecord]:
    """Series matching ``filters`` (keys of :data:`SERIES_KEYS` and :data:`STUDY_KEYS`)."""
    where = Where(fuzzy)
    # the study's UID on the series row itself: its index, not a join, narrows the rows
    where.add({**STUDY_KEYS, "StudyInstanceUID": ("s", "study_uid", "uid")}, filters)
    where.add(SERIES_KEYS, filters)
    page, params = _page(limit, offset)
    rows = session.execute(
        f"SELECT {_SERIES_COLUMNS}, a.attrs FROM imaging_series s JOIN imaging_study t "
        "ON t.study_uid = s.study_uid JOIN imaging_study_attrs a ON a.study_uid = t.study_uid "
        f"WHERE {where.sql()}"
        f"{_order(session, where, 's.study_uid, s.series_uid')}{page}",
        [*where.params, *params]).fetchall()
    return [_series(row[:6], row[6]) for row in rows]


def find_instances(session: Any, filters: Mapping[str, str], *, fuzzy: bool = False,
                   limit: int | None = 100, offset: int = 0) -> list[InstanceRecord]:
    """Instances matching ``filters`` (keys of every level)."""
    where = Where(fuzzy)
    where.add({**STUDY_KEYS, "StudyInstanceUID": ("i", "study_uid", "uid")}, filters)
    where.add({**SERIES_KEYS, "SeriesInstanceUID": ("i", "series_uid", "uid")}, filters)
    where.add(INSTANCE_KEYS, filters)
    page, params = _page(limit, offset)
    rows = session.execute(
        f"SELECT {_INSTANCE_COLUMNS}, s.attrs, a.attrs FROM imaging_instance i "
        "JOIN imaging_series s ON s.series_uid = i.series_uid "
        "JOIN imaging_study t ON t.study_uid = i.study_uid "
        f"JOIN imaging_study_attrs a ON a.study_uid = t.study_uid WHERE {where.sql()}"
        f"{_order(session, where, 'i.study_uid, i.series_uid, i.sop_uid')}{page}",
        [*where.params, *params]).fetchall()
    return [_instance(row[:9], row[9], row[10]) for row in rows]


def study_instances(session: Any, study_uid: str) -> list[InstanceRecord]:
    """Every instance of a study (no limit: the ImagingStudy lists them all)."""
    rows = session.execute(f"SELECT {_INSTANCE_COLUMNS} FROM imaging_instance i "
                           "WHERE i.study_uid = ? ORDER BY i.series_uid, i.sop_uid",
                           (study_uid,)).fetchall()
    return [_instance(row) for row in rows]


def instance(session: Any, sop_uid: str) -> InstanceRecord | None:
    row = session.execute(f"SELECT {_INSTANCE_COLUMNS} FROM imaging_instance i "
                          "WHERE i.sop_uid = ?", (sop_uid,)).fetchone()
    return None if row is None else _instance(row)


def study(session: Any, study_uid: str) -> StudyRecord | None:
    row = session.execute(f"SELECT {_STUDY_COLUMNS} FROM {_STUDY_TABLES} "
                          "WHERE t.study_uid = ?", (study_uid,)).fetchone()
    return None if row is None else _study(row)
