"""Transport-free FHIR use cases: interactions, bundles, capability.

Nothing here knows HTTP: a :class:`FhirRequest` goes in, a
:class:`FhirResponse` comes out, so transaction entries, the CLI loader and
(later) pillars all call the same functions.
"""

from hygeia.server.context import FhirRequest, FhirResponse, Settings
from hygeia.server.service import FhirService

__all__ = ["FhirRequest", "FhirResponse", "FhirService", "Settings"]
