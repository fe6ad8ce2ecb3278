"""The imaging pillar's own tables, the migration stream "imaging" (ADR 0006).

The index of what the archive holds, one row per study, series and instance, so
QIDO-RS and C-FIND answer from indexed columns and never open a file:

- ``imaging_study``: one row per Study Instance UID: the patient and study
  attributes matched on (``patient_id``, ``name_key``: the PatientName in upper
  case, ``study_date``, ``accession`` ...), the counts and modalities kept up to date as instances
  arrive, ``attrs`` (the study-level attributes as DICOM JSON, returned by
  queries, in ``imaging_study_attrs``) and ``source_ae``, the AE title that sent
  its first instance.
- ``imaging_pending``: the studies whose ImagingStudy is behind the index:
  ``changes`` instances added since it was written, the first and last of them
  at ``first_at`` and ``changed_at`` (microseconds since the epoch), ``flush``
  1 once the sender is done (its association ended, its STOW-RS request was
  answered). The linker (:mod:`.linking`) writes the ImagingStudy and deletes the
  row.
- ``imaging_name_index``: one row per word of a study's PatientName (upper
  case), with ``words``, all the name's words between spaces (`` DOE JOHN ``),
  for fuzzy matching: a range scan of the key (``word``, ``words``,
  ``study_uid``) on one query word yields the studies whose other words match
  too, from the index alone (migration 2; ``imaging_name_word`` before it held
  only the word, and a query walked the studies probing it word by word).
- ``imaging_series``: one row per Series Instance UID.
- ``imaging_instance``: one row per SOP Instance UID: where its file is
  (``sha256``: the file's name in the content-addressed store), its size and
  transfer syntax.
- ``imaging_ae``: the AE titles ``hygeia imaging ae add`` registered: C-MOVE
  destinations, and the Patient.identifier system their PatientIDs are in.
"""

from __future__ import annotations

from hygeia.store import Migration, register_stream

STREAM = "imaging"

TABLES = ("imaging_instance", "imaging_series", "imaging_name_index", "imaging_study",
          "imaging_study_attrs", "imaging_pending", "imaging_ae")

# migration 2: the words of each study's name, from the rows of the table it replaces
_COPY_WORDS = (
    "INSERT INTO imaging_name_index (word, words, study_uid) "
    "SELECT w.word, a.words, w.study_uid FROM imaging_name_word w JOIN "
    "(SELECT study_uid, {words} AS words FROM imaging_name_word GROUP BY study_uid) a "
    "ON a.study_uid = w.study_uid WHERE true ON CONFLICT DO NOTHING")

register_stream(STREAM, [
    Migration(1, "the DICOM index: studies, series, instances, name words, AE titles",
              statements=(
        "CREATE TABLE IF NOT EXISTS imaging_study ("
        "study_uid {ctext} PRIMARY KEY, patient_id {ctext} NOT NULL, "
        "patient_name {text} NOT NULL, name_key {ctext} NOT NULL, "
        "birth_date {ctext} NOT NULL, sex {ctext} NOT NULL, "
        "study_date {ctext} NOT NULL, study_time {ctext} NOT NULL, "
        "accession {ctext} NOT NULL, study_id {ctext} NOT NULL, "
        "description {text} NOT NULL, modalities {ctext} NOT NULL, "
        "series_count {bigint} NOT NULL, instance_count {bigint} NOT NULL, "
        "source_ae {ctext} NOT NULL)",
        # apart, so the rows a query walks stay small (1 KB of JSON each made a
        # modality-and-date query over 100,000 studies twice as slow)
        "CREATE TABLE IF NOT EXISTS imaging_study_attrs ("
        "study_uid {ctext} PRIMARY KEY, attrs {text} NOT NULL)",
        # each with the UID: a query's matching UIDs come from the index alone
        "CREATE INDEX IF NOT EXISTS imaging_study_patient "
        "ON imaging_study (patient_id, study_uid)",
        "CREATE INDEX IF NOT EXISTS imaging_study_name ON imaging_study (name_key, study_uid)",
        "CREATE INDEX IF NOT EXISTS imaging_study_date ON imaging_study (study_date, study_uid)",
        "CREATE INDEX IF NOT EXISTS imaging_study_accession "
        "ON imaging_study (accession, study_uid)",
        "CREATE TABLE IF NOT EXISTS imaging_pending ("
        "study_uid {ctext} PRIMARY KEY, changes {bigint} NOT NULL, first_at {bigint} NOT NULL, "
        "changed_at {bigint} NOT NULL, flush {bigint} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS imaging_name_word ("
        "word {ctext} NOT NULL, study_uid {ctext} NOT NULL, PRIMARY KEY (word, study_uid))",
        "CREATE INDEX IF NOT EXISTS imaging_name_word_study "
        "ON imaging_name_word (study_uid, word)",
        "CREATE TABLE IF NOT EXISTS imaging_series ("
        "series_uid {ctext} PRIMARY KEY, study_uid {ctext} NOT NULL, "
        "modality {ctext} NOT NULL, series_number {ctext} NOT NULL, "
        "description {text} NOT NULL, body_part {ctext} NOT NULL, "
        "instance_count {bigint} NOT NULL, attrs {text} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS imaging_series_study "
        "ON imaging_series (study_uid, modality)",
        "CREATE INDEX IF NOT EXISTS imaging_series_modality "
        "ON imaging_series (modality, study_uid)",
        "CREATE TABLE IF NOT EXISTS imaging_instance ("
        "sop_uid {ctext} PRIMARY KEY, series_uid {ctext} NOT NULL, "
        "study_uid {ctext} NOT NULL, sop_class {ctext} NOT NULL, "
        "instance_number {ctext} NOT NULL, transfer_syntax {ctext} NOT NULL, "
        "sha256 {ctext} NOT NULL, size {bigint} NOT NULL, attrs {text} NOT NULL, "
        "stored_at {bigint} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS imaging_instance_series ON imaging_instance (series_uid)",
        "CREATE INDEX IF NOT EXISTS imaging_instance_study ON imaging_instance (study_uid)",
        "CREATE INDEX IF NOT EXISTS imaging_instance_sha ON imaging_instance (sha256)",
        "CREATE TABLE IF NOT EXISTS imaging_ae ("
        "title {ctext} PRIMARY KEY, host {text} NOT NULL, port {bigint} NOT NULL, "
        "patient_system {text})",
    )),
    Migration(2, "fuzzy PatientName matching from one index range: imaging_name_index",
              statements=(
        # the key is the covering index: the range of one word gives the name's other
        # words and the study without reading a row (ADR 0021)
        "CREATE TABLE IF NOT EXISTS imaging_name_index ("
        "word {ctext} NOT NULL, words {ctext} NOT NULL, study_uid {ctext} NOT NULL, "
        "PRIMARY KEY (word, words, study_uid))",
        "CREATE INDEX IF NOT EXISTS imaging_name_index_study "
        "ON imaging_name_index (study_uid)",
    ), dialects={
        "sqlite": (_COPY_WORDS.format(words="' ' || group_concat(word, ' ') || ' '"),
                   "DROP TABLE IF EXISTS imaging_name_word"),
        "postgresql": (_COPY_WORDS.format(words="' ' || string_agg(word, ' ') || ' '"),
                       "DROP TABLE IF EXISTS imaging_name_word"),
    }),
])
