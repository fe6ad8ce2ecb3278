"""The audit trail: BALP AuditEvents for every request, written in the request's transaction or
through a durable outbox.
"""
