"""The FHIR REST API without HTTP: the router, read, write and search interactions, bundles,
the CapabilityStatement and OpenAPI document.
"""
