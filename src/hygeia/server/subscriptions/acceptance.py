"""The write hook that refuses a Subscription the server cannot honour (422).

It runs on every write path (REST, Bundles, ``hygeia load``, ``$import``), in
the write's transaction, so a Subscription is stored only when
:func:`~hygeia.server.subscriptions.spec.read_subscription` accepts it; the
OperationOutcome names the element at fault.  Deletions always pass.  With
authorization on, the creating token's access is recorded (owner.py): the
notifications carry only what it may read.
"""

from __future__ import annotations

import orjson

import hygeia.server.subscriptions.tables as tables
from hygeia.fhir.search.parameters import default_registry
from hygeia.server.auth.access import current_access
from hygeia.server.subscriptions.owner import access_text
from hygeia.server.subscriptions.spec import read_subscription
from hygeia.store import Session, StoredVersion

STATUSES = ("requested", "active", "error", "off")


class SubscriptionAcceptance:
    """A :class:`~hygeia.server.extensions.WriteHook` on Subscription."""

    types = frozenset({"Subscription"})

    def written(self, session: Session, version: StoredVersion) -> None:
        if version.deleted or version.content is None:
            return
        resource = orjson.loads(version.content)
        read_subscription(resource, session.registry or default_registry())
        access = current_access()
        if access is not None:
            tables.save_owner(session, version.id, access_text(access))
