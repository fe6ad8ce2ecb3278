"""The pure FHIR core: definitions, validation and errors. No I/O, no web framework."""
