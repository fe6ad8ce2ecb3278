"""Host names as RFC 3986 defines them: the ``Host`` header check and ``--base-url``.

Self links, ``Location``, the SMART discovery document and token audiences
are built from the configured base URL, never from the ``Host`` header a
client sends (issue 13: it was reflected unescaped).  The header is still
checked, because HTTP/1.1 requires a valid one (RFC 9112 section 3.2).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# host = IP-literal / IPv4address / reg-name, then an optional :port (RFC 3986 3.2.2-3)
_IP_LITERAL = r"\[[0-9A-Za-z:._~!$&'()*+,;=-]+\]"
_REG_NAME = r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*"
_HOST_PORT = re.compile(rf"(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]{{0,5}})?")
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def is_valid_host(value: str) -> bool:
    """True for ``host[:port]`` as RFC 3986 allows it (``Host`` header syntax).

    >>> is_valid_host("fhir.example.org:8443"), is_valid_host('evil"><script>')
    (True, False)
    """
    return _HOST_PORT.fullmatch(value) is not None


class BaseUrlError(ValueError):
    """``--base-url`` is not ``scheme://host[:port]``."""


def parse_base_url(text: str) -> str:
    """The server root ``scheme://host[:port]`` without a trailing slash.

    The FHIR base is this plus ``/fhir``; a path would need routing under a
    prefix, which the server does not do, so only ``/`` is accepted.
    """
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https"):
        raise BaseUrlError(f"{text!r} must start with http:// or https://")
    if not parts.netloc or "@" in parts.netloc or not is_valid_host(parts.netloc) \
            or not parts.hostname:
        raise BaseUrlError(f"{text!r} has no valid host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BaseUrlError(f"{text!r} must be the server root (no path, query or fragment); "
                           "the FHIR base is it plus /fhir")
    try:
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        raise BaseUrlError(f"{text!r} has a port out of range") from None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def default_base_url(host: str, port: int) -> str:
    """The base URL a bind address implies: ``http://127.0.0.1:8080``; brackets for IPv6."""
    try:
        literal = ipaddress.ip_address(host).version == 6
    except ValueError:
        literal = False
    return f"http://[{host}]:{port}" if literal else f"http://{host}:{port}"
