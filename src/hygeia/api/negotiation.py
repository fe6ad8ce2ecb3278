"""Content negotiation and header parsing for the FHIR HTTP API."""

from __future__ import annotations

from typing import NamedTuple

from hygeia.fhir.outcome import NotAcceptable, UnsupportedMediaType

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
PATCH_TYPES = ("application/json-patch+json",)
FORM_TYPE = "application/x-www-form-urlencoded"
FHIR_JSON = "application/fhir+json; charset=utf-8"
_FORMAT_ALIASES = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_request_type(content_type: str | None, method: str) -> str:
    """The body's media type, or 415 if we cannot read it."""
    kind = media_type(content_type)
    allowed = JSON_TYPES + (PATCH_TYPES if method == "PATCH" else ()) + (FORM_TYPE,)
    if kind in allowed:
        return kind
    if not kind:
        return "application/fhir+json"  # be lenient with clients that omit the header
    hint = " Hygeia speaks FHIR JSON; XML is not supported." if "xml" in kind else ""
    raise UnsupportedMediaType(
        f"Content-Type '{kind}' is not supported for {method}; use application/fhir+json"
        f"{' or application/json-patch+json' if method == 'PATCH' else ''}.{hint}",
        expression="Content-Type")


def response_type(accept: str | None) -> str | None:
    """``application/json`` for a client that asks for it and not for FHIR JSON by name:
    FHIR treats the two as one format (http.html#mime), so its body is the same; None
    keeps the default, application/fhir+json."""
    kinds = [media_type(part) for part in (accept or "").split(",")]
    if "application/json" in kinds and not {"application/fhir+json",
                                            "application/json+fhir"} & set(kinds):
        return "application/json; charset=utf-8"
    return None


def is_json_format(format_param: str) -> bool:
    """Whether a ``_format`` value names FHIR JSON (``json``, ``application/fhir+json``)."""
    return format_param.strip().lower() in _FORMAT_ALIASES


def check_accept(accept: str | None, format_param: str | None,
                 own_formats: frozenset[str] = frozenset()) -> None:
    """Refuse (406) a client that will only take a format we cannot produce (XML, RDF),
    or only another FHIR version (``fhirVersion`` of a media type, versioning.html#mt).

    ``own_formats`` are the ``_format`` values the operation asked for produces itself
    (``Operation.formats``: the CSV or Parquet rows of ``$viewdefinition-run``); they
    pass to it, and its answer is in that format whatever ``Accept`` says."""
    if format_param is not None:
        asked = format_param.strip().lower()
        if asked in own_formats:
            return
        if asked not in _FORMAT_ALIASES:
            names = ["json", *sorted(f for f in own_formats if "/" not in f)]
            choices = names[0] if len(names) == 1 else \
                f"{', '.join(names[:-1])} or {names[-1]}"
            raise NotAcceptable(f"_format={format_param} is not supported; use {choices}.",
                                expression="_format")
        return
    if not accept:
        return
    ranges = [_media_range(part) for part in accept.split(",")]
    json_ranges = [(kind, version) for kind, version in ranges if _is_json(kind)]
    if any(version is None or _major_minor(version) == FHIR_VERSION
           for _, version in json_ranges):
        return
    if json_ranges:
        asked = ", ".join(sorted({str(version) for _, version in json_ranges}))
        raise NotAcceptable(f"Accept asks for fhirVersion {asked[:80]}; Hygeia serves FHIR "
                            f"R4 only (fhirVersion={FHIR_VERSION}).", expression="Accept")
    raise NotAcceptable(f"Cannot produce any of '{accept}'; Hygeia returns application/fhir+json.",
                        expression="Accept")


FHIR_VERSION = "4.0"  # R4; a media type's fhirVersion may name 4.0 or 4.0.1 (versioning.html)


def _media_range(part: str) -> tuple[str, str | None]:
    """``application/fhir+json; fhirVersion=4.0; q=0.9`` -> (media type, fhirVersion)."""
    kind, *parameters = part.split(";")
    version = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "fhirversion":
            version = value.strip().strip('"')
    return media_type(kind), version


def _is_json(kind: str) -> bool:
    return kind in JSON_TYPES or kind.endswith("/*") or kind == "*/*" or "json" in kind


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class Preferences(NamedTuple):
    """What a Prefer header asks for (RFC 7240, with FHIR's values)."""

    return_: str | None = None  # minimal | representation | OperationOutcome
    strict: bool = False  # handling=strict
    lenient: bool = False  # handling=lenient
    respond_async: bool = False


def parse_prefer(header: str | None) -> Preferences:
    prefer_return, handling, respond_async = None, None, False
    for part in (header or "").split(","):
        for item in part.split(";"):
            name, _, value = item.strip().partition("=")
            name, value = name.strip(), value.strip().strip('"')
            if name == "return" and value in ("minimal", "representation", "OperationOutcome"):
                prefer_return = value
            elif name == "handling":
                handling = value
            elif name == "respond-async":
                respond_async = True
    return Preferences(prefer_return, handling == "strict", handling == "lenient",
                       respond_async)
