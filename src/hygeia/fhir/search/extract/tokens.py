"""Token parameter normalisers (search.html, "token").

Besides the ``(param, system, code)`` rows, two modifiers need rows of their own:

- ``:text`` -- ``token_texts`` rows ``(param, normalised text)`` from
  CodeableConcept.text, Coding.display and Identifier.type.text;
- ``:of-type`` -- a token row under the parameter name ``"<param>:of-type"``
  with system = Identifier.type.coding.system and code =
  ``"<type code>|<identifier value>"``, so ``identifier:of-type=S|C|V`` is the
  exact lookup ``("identifier:of-type", S, "C|V")``.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.search.extract.text import normalise_text
from hygeia.fhir.search.rows import IndexRows, TokenRow, TokenTextRow

__all__ = [
    "OF_TYPE",
    "token_boolean",
    "token_codeable_concept",
    "token_coding",
    "token_contact_point",
    "token_identifier",
    "token_primitive",
]

OF_TYPE = ":of-type"


def _text(value: Any) -> str | None:
    """A non-empty JSON string, else None (stored data is valid; fuzzed data may not be)."""
    return value if type(value) is str and value else None


def token_primitive(code: str, value: Any, rows: IndexRows) -> None:
    """code, string, id, uri...: a code without a system."""
    if type(value) is str and value:
        rows.tokens.append((code, None, value))


def token_boolean(code: str, value: Any, rows: IndexRows) -> None:
    """boolean: the codes ``true`` and ``false``."""
    if type(value) is bool:
        rows.tokens.append((code, None, "true" if value else "false"))


def token_coding(code: str, value: Any, rows: IndexRows) -> None:
    """Coding: (system, code), and its display for ``:text``."""
    if type(value) is dict:
        _coding(code, value, rows.tokens, rows.token_texts)


def token_codeable_concept(code: str, value: Any, rows: IndexRows) -> None:
    """CodeableConcept: one row per coding; its text (and codings' displays) for ``:text``.

    The most common value in clinical data, hence the local list references.
    """
    if type(value) is not dict:
        return
    codings = value.get("coding")
    if type(codings) is list:
        tokens, texts = rows.tokens, rows.token_texts
        for coding in codings:
            if type(coding) is dict:
                _coding(code, coding, tokens, texts)
    _add_text(code, value.get("text"), rows)


def _coding(
    code: str, coding: dict[str, Any], tokens: list[TokenRow], texts: list[TokenTextRow]
) -> None:
    system, token = coding.get("system"), coding.get("code")
    if type(system) is not str or not system:
        system = None
    if type(token) is not str or not token:
        token = None
    if system is not None or token is not None:
        tokens.append((code, system, token))
    display = coding.get("display")
    if type(display) is str:
        normalised = normalise_text(display)
        if normalised:
            texts.append((code, normalised))


def token_identifier(code: str, value: Any, rows: IndexRows) -> None:
    """Identifier: (system, value); its type for ``:of-type`` and ``:text``."""
    if type(value) is not dict:
        return
    system, identifier = _text(value.get("system")), _text(value.get("value"))
    if system is not None or identifier is not None:
        rows.tokens.append((code, system, identifier))
    kind = value.get("type")
    if type(kind) is dict:
        _add_of_type(code, kind, identifier, rows)
        _add_text(code, kind.get("text"), rows)


def token_contact_point(code: str, value: Any, rows: IndexRows) -> None:
    """ContactPoint: its value, without a system (``telecom``, ``phone``, ``email``)."""
    if type(value) is dict:
        token_primitive(code, value.get("value"), rows)


def _add_of_type(code: str, kind: dict[str, Any], identifier: str | None, rows: IndexRows) -> None:
    codings = kind.get("coding")
    if identifier is None or type(codings) is not list:
        return
    for coding in codings:
        if type(coding) is dict and _text(coding.get("code")) is not None:
            rows.tokens.append(
                (code + OF_TYPE, _text(coding.get("system")), f"{coding['code']}|{identifier}")
            )


def _add_text(code: str, text: Any, rows: IndexRows) -> None:
    if type(text) is str:
        normalised = normalise_text(text)
        if normalised:
            rows.token_texts.append((code, normalised))
