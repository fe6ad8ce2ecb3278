"""Analytics pillar: SQL on FHIR v2 ViewDefinitions run over Hygeia's store."""
