"""Index extraction: one resource in, the normalised rows of every search parameter out.

Each indexed SearchParameter's FHIRPath expression is compiled, per resource
type, into direct dictionary navigation typed by the R4 definitions (see
:mod:`.paths`), with a normaliser chosen per branch at compile time (see
:mod:`.normalisers`).  No FHIRPath is interpreted per resource unless a custom
parameter uses syntax the compiler refuses (:mod:`.fallback`).

Representation choices the query side relies on:

- token ``:text`` -- ``IndexRows.token_texts`` rows ``(param, normalised text)``
  from CodeableConcept.text, Coding.display and Identifier.type.text;
- token ``:of-type`` -- token rows under ``"<param>:of-type"`` with system =
  the identifier type's coding system, code = ``"<type code>|<value>"``;
- reference ``:identifier`` -- token rows under ``"<param>:identifier"`` with
  Reference.identifier's (system, value);
- canonical values -- under a reference parameter ``(param, None, None, url,
  version)``; under a uri parameter (``_profile``) a uri row as written plus
  one without ``|version``;
- composites -- ``(param, group, component index, component row without
  param)``; groups number the composite's roots in the resource from 0.

Plans are cached per registry (weakly) and resource type and rebuilt when
:meth:`SearchRegistry.add` has changed that type's parameters (``for_type``
then returns a new dict); :func:`invalidate` drops every cached plan.  Values
seen before (timestamps, references, display texts) are memoised;
:func:`clear_memos` empties those memos.

>>> rows = extract_index({"resourceType": "Patient", "id": "p1", "gender": "female"},
...                      complete=True)
>>> sorted(rows.tokens)  # deceased: Patient.deceased.exists() and Patient.deceased != false
[('_id', None, 'p1'), ('deceased', None, 'false'), ('gender', None, 'female')]
"""

from __future__ import annotations

from hygeia.fhir.search.extract.compiler import compile_parameter
from hygeia.fhir.search.extract.extractor import (
    clear_memos,
    extract_index,
    extract_parameter,
    fallback_parameters,
    invalidate,
)
from hygeia.fhir.search.extract.text import normalise_text

__all__ = [
    "clear_memos",
    "compile_parameter",
    "extract_index",
    "extract_parameter",
    "fallback_parameters",
    "invalidate",
    "normalise_text",
]
