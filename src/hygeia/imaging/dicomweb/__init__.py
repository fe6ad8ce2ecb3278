"""DICOMweb under ``/dicomweb``: STOW-RS, QIDO-RS and WADO-RS over the imaging archive.

- :mod:`.mount`: the :class:`~hygeia.server.extensions.Mount` the pillar registers;
- :mod:`.routes`: the paths and the service each one is;
- :mod:`.stow`, :mod:`.search`, :mod:`.retrieve`: the three services;
- :mod:`.multipart`, :mod:`.dicomjson`, :mod:`.qido`, :mod:`.render`: the formats;
- :mod:`.access` and :mod:`.audit`: ImagingStudy scopes, patients, AuditEvents.

docs/guide/imaging.md ("DICOMweb") is the user's view.
"""
