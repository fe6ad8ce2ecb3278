"""The public keys of clients registered by the URL of their JWK Set.

SMART Backend Services lets a client publish its keys at a URL and rotate
them there; the server fetches them through the guarded outbound client
(server/outbound.py) and keeps them as long as the answer's
``Cache-Control: max-age`` says (bounded; 5 minutes when it says nothing).
An assertion signed with a key id the cached set lacks makes the server
fetch again at once (the client has just rotated), but at most once per
:data:`REFETCH_SECONDS` per URL, so a stream of made-up key ids cannot turn
the server into a request cannon.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from hygeia.server.outbound import OutboundPolicy, OutboundRefused, fetch

DEFAULT_MAX_AGE = 300.0  # seconds a JWK Set is kept when its answer gives no max-age
MAX_AGE_CAP = 24 * 3600.0  # and at most this long whatever it says
REFETCH_SECONDS = 10.0  # an unknown kid fetches again, but not more often than this
_MAX_AGE = re.compile(r"max-age=(\d+)")


class ClientKeysUnavailable(Exception):
    """The client's JWK Set could not be fetched or is not one (the message says why)."""


@dataclass(slots=True)
class _Entry:
    keys: list[dict[str, Any]]
    fetched: float  # time.monotonic() of the fetch (or of the failed try)
    max_age: float
    error: str | None = None


class ClientKeys:
    """JWK Sets by URL, fetched under ``policy`` and cached (see module doc)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def keys(self, url: str, kid: str | None) -> list[dict[str, Any]]:
        """The keys published at ``url``; fetched again when stale or ``kid`` is new."""
        with self._lock:
            entry = self._cache.get(url)
            now = time.monotonic()
            if entry is None or self._wants_fetch(entry, kid, now):
                entry = self._fetch(url, now)
                self._cache[url] = entry
        if entry.error is not None:
            raise ClientKeysUnavailable(entry.error)
        return entry.keys

    @staticmethod
    def _wants_fetch(entry: _Entry, kid: str | None, now: float) -> bool:
        age = now - entry.fetched
        if age < REFETCH_SECONDS:
            return False
        if age >= entry.max_age or entry.error is not None:
            return True
        return kid is not None and all(key.get("kid") != kid for key in entry.keys)

    def _fetch(self, url: str, now: float) -> _Entry:
        try:
            answer = fetch(url, self.policy)
            keys = _public_keys(answer.json())
        except (OutboundRefused, ClientKeysUnavailable) as error:
            return _Entry([], now, DEFAULT_MAX_AGE, f"The client's keys at {url} could not "
                          f"be used: {error}")
        return _Entry(keys, now, _max_age(answer.headers.get("cache-control", "")))


def _public_keys(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ClientKeysUnavailable("the answer is not a JWK Set (an object with 'keys')")
    keys = [key for key in document["keys"] if isinstance(key, dict)]
    if any("d" in key for key in keys):
        raise ClientKeysUnavailable("the JWK Set holds a private key")
    return keys


def _max_age(cache_control: str) -> float:
    if "no-store" in cache_control or "no-cache" in cache_control:
        return REFETCH_SECONDS
    found = _MAX_AGE.search(cache_control)
    if found is None:
        return DEFAULT_MAX_AGE
    return min(MAX_AGE_CAP, max(REFETCH_SECONDS, float(found.group(1))))
