"""``hygeia imaging ...``: AE titles (C-MOVE destinations, PatientID systems) and deleting a study.

- ``hygeia imaging ae add TITLE HOST PORT [--patient-system URI]``: register a
  DICOM peer (again: update it);
- ``hygeia imaging ae list`` and ``hygeia imaging ae remove TITLE``;
- ``hygeia imaging delete STUDYUID``: the study's files, index rows and
  ImagingStudy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hygeia.imaging.settings import is_uid
from hygeia.store import DEFAULT_URL, open_repository, reading, writing

EPILOG = """examples:
  hygeia imaging ae add PACS 10.0.0.5 104 --patient-system urn:oid:1.2.3.4 --db sqlite:///hygeia.db
  hygeia imaging ae list --db sqlite:///hygeia.db
  hygeia imaging delete 1.2.840.113619.2.55.3.604688 --db sqlite:///hygeia.db
"""


def default_files(db_url: str) -> Path:
    """The folder ``hygeia serve`` keeps files in by default (its ``--files``): beside a
    SQLite database, else ``hygeia-files`` in the working directory."""
    if db_url.startswith("sqlite:///"):
        path = Path(db_url[len("sqlite:///"):].split("?", 1)[0])
        return path.with_name(f"{path.stem}-files")
    return Path("hygeia-files").resolve()


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_URL, help=f"database URL (default {DEFAULT_URL})")


class ImagingCommand:
    """``hygeia imaging ae ...`` and ``hygeia imaging delete``."""

    name = "imaging"
    help = "the imaging pillar: DICOM peers (ae add/list/remove) and deleting a study"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        actions = parser.add_subparsers(dest="imaging_command", metavar="COMMAND",
                                        required=True)
        ae = actions.add_parser("ae", help="DICOM peers: C-MOVE destinations and the "
                                           "PatientID system of what they send",
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        ae_actions = ae.add_subparsers(dest="ae_command", metavar="ACTION", required=True)
        add = ae_actions.add_parser("add", help="register (or update) a peer")
        add.add_argument("title", metavar="TITLE", help="its AE title (1-16 characters)")
        add.add_argument("host", metavar="HOST", help="its host name or address")
        add.add_argument("port", metavar="PORT", type=int, help="its DICOM port")
        add.add_argument("--patient-system", default=None, metavar="URI",
                         help="the Patient.identifier system of the PatientIDs it sends "
                              "(default: the server's --dicom-patient-system)")
        _database_flag(add)
        listing = ae_actions.add_parser("list", help="the registered peers")
        _database_flag(listing)
        remove = ae_actions.add_parser("remove", help="forget a peer")
        remove.add_argument("title", metavar="TITLE", help="its AE title")
        _database_flag(remove)
        delete = actions.add_parser("delete", help="delete a study: files, index and "
                                                   "ImagingStudy", epilog=EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        delete.add_argument("study", metavar="STUDYUID", help="its Study Instance UID")
        delete.add_argument("--files", default=None, metavar="DIR",
                            help="the server's --files folder (default: as hygeia serve's)")
        delete.add_argument("--dicom-storage", default=None, metavar="DIR",
                            help="the server's --dicom-storage (default: dicom in --files)")
        _database_flag(delete)

    def run(self, args: argparse.Namespace) -> int:
        if args.imaging_command == "delete":
            return _delete(args)
        return _ae(args)


def _ae(args: argparse.Namespace) -> int:
    with open_repository(args.db) as repository:
        if args.ae_command == "add":
            title = args.title.strip()
            if not 0 < len(title) <= 16 or not title.isprintable() or "\\" in title:
                print(f"error: the AE title {args.title!r} must be 1 to 16 printable "
                      "characters without a backslash", file=sys.stderr)
                return 2
            if not 0 < args.port <= 65535:
                print(f"error: the port {args.port} is out of range: give 1 to 65535",
                      file=sys.stderr)
                return 2
            with writing(repository) as session:
                session.execute("DELETE FROM imaging_ae WHERE title = ?", (title,))
                session.execute("INSERT INTO imaging_ae (title, host, port, patient_system) "
                                "VALUES (?, ?, ?, ?)",
                                (title, args.host, args.port, args.patient_system))
            print(f"registered {title} at {args.host}:{args.port}"
                  + (f", PatientIDs in {args.patient_system}" if args.patient_system else ""))
            return 0
        if args.ae_command == "remove":
            with writing(repository) as session:
                removed = session.execute("DELETE FROM imaging_ae WHERE title = ?",
                                          (args.title,)).rowcount
            if not removed:
                print(f"error: no AE title {args.title!r} is registered", file=sys.stderr)
                return 1
            print(f"removed {args.title}")
            return 0
        with reading(repository) as session:
            rows = session.execute("SELECT title, host, port, patient_system FROM imaging_ae "
                                   "ORDER BY title").fetchall()
    for title, host, port, system in rows:
        print(f"{title}\t{host}:{port}" + (f"\t{system}" if system else ""))
    if not rows:
        print("no AE titles registered (hygeia imaging ae add TITLE HOST PORT)")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from hygeia.imaging.archive import Archive
    from hygeia.imaging.linking import delete_study
    from hygeia.server import FhirService
    from hygeia.server.context import JobSettings, Settings

    if not is_uid(args.study):
        print(f"error: {args.study!r} is not a Study Instance UID (digits and dots)",
              file=sys.stderr)
        return 2
    files = Path(args.files) if args.files else default_files(args.db)
    root = Path(args.dicom_storage) if args.dicom_storage else files / "dicom"
    with open_repository(args.db) as repository:
        service = FhirService(repository, Settings(jobs=JobSettings(files_dir=str(files))))
        result, id = delete_study(service, Archive(repository, root), args.study)
    if not result.instances and id is None:
        print(f"error: no study {args.study} is stored", file=sys.stderr)
        return 1
    print(f"deleted study {args.study}: {result.instances} instances, {result.files} files"
          + (f", ImagingStudy/{id}" if id else ""))
    return 0
