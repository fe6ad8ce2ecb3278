"""Patches: FHIRPath Patch (fhirpatch.html, a Parameters resource of add/insert/delete/
replace/move) and JSON Patch (RFC 6902), both bounded by :class:`PatchLimits`."""

from hygeia.fhir.patch.budget import PatchLimits
from hygeia.fhir.patch.fhirpath_patch import apply_fhirpath_patch
from hygeia.fhir.patch.json_patch import apply_json_patch

__all__ = ["PatchLimits", "apply_fhirpath_patch", "apply_json_patch"]
