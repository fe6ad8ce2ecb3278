"""Hygeia: an open-source FHIR R4 (4.0.1) digital-health data hub."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
