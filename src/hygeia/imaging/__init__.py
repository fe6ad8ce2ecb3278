"""Imaging: DICOM images received from modalities and PACS, linked into the FHIR record.

- :mod:`.archive`: the public API to store, find, open and delete instances
  (content-addressed files, :mod:`.storage`, and their index, :mod:`.index`,
  in the pillar's own tables, :mod:`.tables`);
- :mod:`.linking`: every stored study becomes an ImagingStudy;
- :mod:`.scp`: the DIMSE listener (``hygeia serve --dicom-port``);
- :mod:`.pillar`: the serve flags, start-up and ``hygeia imaging`` commands, with
  their defaults in :mod:`.settings` (no pydicom or pynetdicom until a server starts).

docs/guide/imaging.md is the user's view; docs/adr/ has the storage layout.
"""
