"""FHIR Subscriptions: R4 criteria-based and R5 Backport topic-based, rest-hook and websocket.

How the parts fit (docs/guide/subscriptions.md):

* ``acceptance.py``: a write hook refuses (422) what cannot be honoured;
* ``feed.py``: an event consumer of the change feed records, for each committed
  change, a numbered notification per matching subscription (tables.py, the
  "subscriptions" migration stream), exactly once with its cursor;
* ``delivery.py``: a thread per process sends rest-hook handshakes,
  notifications in order, heartbeats, with retries and then status ``error``;
* ``websocket.py``: the websocket channel, a listener on ``--ws-port``;
* ``operations.py``: ``$status``, ``$events`` and ``$get-ws-binding-token``;
* ``capability.py``: the topics in the CapabilityStatement.

:class:`~hygeia.server.subscriptions.install.Subscriptions` registers them on the
service and runs the delivery thread; the service holds one.  This module imports
nothing, so importing ``tables`` alone (which registers the migration stream, as
``hygeia`` does for every command before it opens a database) stays light.
"""
