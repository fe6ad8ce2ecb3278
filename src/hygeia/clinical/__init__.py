"""The clinical-services pillar: CDS Hooks 2.0 services and the NEWS2 early-warning engine.

A pillar in ring 3 (docs/guide/clinical.md): it imports the public APIs of
``hygeia.fhir``, ``hygeia.store`` and ``hygeia.server`` only, never another pillar.
"""
