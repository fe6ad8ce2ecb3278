"""SMART App Launch authorisation: the built-in authorization server (clients, tokens,
the ``/auth`` mount), external issuers, and the scope guard every session goes through."""
