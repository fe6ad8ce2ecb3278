"""The topics, as the Backport IG lists them in the CapabilityStatement.

One topic per resource type, ``urn:hygeia:topic:{Type}`` (its creates, updates
and deletes, filterable by any of the type's search parameters and by
``interaction``), each a ``capabilitystatement-subscriptiontopic-canonical``
extension on the Subscription resource entry; and the statement instantiates the
IG's R4 subscription server statement.
"""

from __future__ import annotations

from typing import Any

from hygeia.fhir.spec import resource_types
from hygeia.server.subscriptions.spec import TOPIC_CANONICAL, topic_for

SERVER_STATEMENT = ("http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/"
                    "backport-subscription-server-r4")
CHANNEL_NOTE = ("Channels: rest-hook and websocket ($get-ws-binding-token); payloads empty, "
                "id-only and full-resource; criteria a search URL (R4) or a topic "
                "urn:hygeia:topic:{Type} with backport filter criteria and interaction "
                "(create, update, delete).")


def with_topics(statement: dict[str, Any]) -> dict[str, Any]:
    """``statement`` with the topics on its Subscription entry (the entry is copied)."""
    topics = [{"url": TOPIC_CANONICAL, "valueCanonical": topic_for(name)}
              for name in sorted(resource_types())]
    rest = statement["rest"][0]
    resources = [({**entry, "extension": [*entry.get("extension", []), *topics],
                   "documentation": CHANNEL_NOTE}
                  if entry.get("type") == "Subscription" else entry)
                 for entry in rest["resource"]]
    return {**statement, "instantiates": [*statement.get("instantiates", []), SERVER_STATEMENT],
            "rest": [{**rest, "resource": resources}, *statement["rest"][1:]]}
