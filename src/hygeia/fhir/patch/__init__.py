"""FHIRPath Patch (fhirpatch.html): a Parameters resource of add/insert/delete/replace/move."""

from hygeia.fhir.patch.fhirpath_patch import apply_fhirpath_patch

__all__ = ["apply_fhirpath_patch"]
