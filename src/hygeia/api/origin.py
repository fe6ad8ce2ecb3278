"""The server root that links, discovery and token audiences are built on.

It is the configured public base URL (``hygeia serve --base-url``, Settings.base_url),
never the ``Host`` header a client sends: a reflected Host header let anyone put
their own text into self links, the SMART discovery document and the audience of
the tokens this server issues (issue 13 item 12).
"""

from __future__ import annotations

from typing import Any

from hygeia.server import Settings


def server_root(settings: Settings, environ: dict[str, Any]) -> str:
    """``scheme://host:port`` without a trailing slash; the FHIR base is it plus ``/fhir``.

    Without a configured base URL (the app embedded in another WSGI server, tests),
    the WSGI server's own name and port are used: they come from its configuration,
    not from the request.
    """
    if settings.base_url:
        return settings.base_url.rstrip("/")
    name = environ.get("SERVER_NAME", "localhost")
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{name}:{environ.get('SERVER_PORT', '80')}"
