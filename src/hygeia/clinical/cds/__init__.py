"""CDS Hooks 2.0: discovery, the built-in services and feedback, at ``/cds-services``.

:class:`~hygeia.clinical.cds.mount.CdsMount` answers the HTTP side; each built-in
service is a :class:`~hygeia.clinical.cds.model.CdsService` in ``services/``.
"""
