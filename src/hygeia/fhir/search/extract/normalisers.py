"""Which normaliser turns a value of FHIR type T into rows for a parameter of type P.

The table is consulted once per compiled branch (the branch's type is known at
compile time), so extraction never dispatches on a value's shape.  A missing
entry means the combination is not indexed, deliberately: a Quantity or
Range under a token parameter (Group ``value``), an Age or Range under a date
parameter (``Procedure.performed[x]``: an age needs the patient's birth date,
which is another resource), an Attachment under a reference parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hygeia.fhir.search.extract.dates import date_period, date_primitive, date_timing
from hygeia.fhir.search.extract.references import (
    reference_canonical,
    reference_reference,
    reference_resource,
)
from hygeia.fhir.search.extract.text import string_address, string_human_name, string_primitive
from hygeia.fhir.search.extract.tokens import (
    token_boolean,
    token_codeable_concept,
    token_coding,
    token_contact_point,
    token_identifier,
    token_primitive,
)
from hygeia.fhir.search.extract.values import (
    NUMBER_TYPES,
    QUANTITY_TYPES,
    TEXT_TYPES,
    number_primitive,
    number_range,
    quantity_money,
    quantity_quantity,
    quantity_range,
    quantity_sampled_data,
    uri_canonical,
    uri_primitive,
)
from hygeia.fhir.search.rows import IndexRows
from hygeia.fhir.spec import is_resource_type

__all__ = ["Normaliser", "normaliser_for"]

Normaliser = Callable[[str, Any, IndexRows], None]


_TABLE: dict[str, dict[str, Normaliser]] = {
    "string": {
        **dict.fromkeys(TEXT_TYPES, string_primitive),
        "HumanName": string_human_name,
        "Address": string_address,
    },
    "token": {
        **dict.fromkeys(TEXT_TYPES, token_primitive),
        "boolean": token_boolean,
        "Coding": token_coding,
        "CodeableConcept": token_codeable_concept,
        "Identifier": token_identifier,
        "ContactPoint": token_contact_point,
    },
    "reference": {
        "Reference": reference_reference,
        "canonical": reference_canonical,
        "uri": reference_canonical,
        "url": reference_canonical,
        "Resource": reference_resource,
    },
    "date": {
        "date": date_primitive,
        "dateTime": date_primitive,
        "instant": date_primitive,
        # choice elements such as Immunization.occurrence[x] and Procedure.performed[x]
        # may hold a free-text string: indexed when it is a valid FHIR date/dateTime
        "string": date_primitive,
        "Period": date_period,
        "Timing": date_timing,
    },
    "number": {**dict.fromkeys(NUMBER_TYPES, number_primitive), "Range": number_range},
    "quantity": {
        **dict.fromkeys(QUANTITY_TYPES, quantity_quantity),
        "Money": quantity_money,
        "Range": quantity_range,
        "SampledData": quantity_sampled_data,
    },
    "uri": {**dict.fromkeys(TEXT_TYPES, uri_primitive), "canonical": uri_canonical},
}


def normaliser_for(param_type: str, fhir_type: str) -> Normaliser | None:
    """The normaliser for values of ``fhir_type`` under a ``param_type`` parameter, if any."""
    found = _TABLE.get(param_type, {}).get(fhir_type)
    if found is None and param_type == "reference" and is_resource_type(fhir_type):
        return reference_resource
    return found
