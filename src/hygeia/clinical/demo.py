"""What ``hygeia serve --demo`` shows of the clinical pillar: ready-to-paste CDS calls.

It stores nothing: the core's demo patients already have vital signs, and a patient
of its own would change what the other guides' examples count. The lines call the
``news2`` service for the first demo patient (the one the core's lines use too).
"""

from __future__ import annotations

import orjson

from hygeia.fhir.search.query import parse_query
from hygeia.server.extensions import Host


def first_patient(host: Host) -> str | None:
    with host.reader() as session:
        query = parse_query("Patient", [("_sort", "_id"), ("_count", "1")],
                            registry=session.registry)
        for stored in session.search(query).matches:
            return str(orjson.loads(stored.content or b"{}").get("id") or stored.id)
    return None


def demo_lines(host: Host, fhir_base: str) -> list[str]:
    root = fhir_base.removesuffix("/fhir")
    lines = ["Clinical pillar (CDS Hooks, NEWS2; docs/guide/clinical.md):",
             f"  curl -s '{root}/cds-services'"]
    patient = first_patient(host)
    if patient is not None:
        call = ('{"hook":"patient-view","hookInstance":"demo-1","context":'
                f'{{"userId":"Practitioner/demo","patientId":"{patient}"}}}}')
        lines.append(f"  curl -s -X POST '{root}/cds-services/news2' "
                     f"-H 'Content-Type: application/json' -d '{call}'")
    return lines
