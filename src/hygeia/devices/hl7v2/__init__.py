"""HL7 v2 messages into FHIR: the handlers per message type (:mod:`.handling` says what
a handler receives and returns; :mod:`.adt` and :mod:`.oru` hold the handlers)."""
