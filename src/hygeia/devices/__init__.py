"""The devices pillar: bedside monitors, lab analysers and home devices feed the record.

HL7 v2 over MLLP (:mod:`.mllp`), an MQTT gateway (:mod:`.mqtt`) and the device
registry, plugged into the core through its declared extension points
(:mod:`hygeia.server.extensions`): a ``Listener`` per protocol, ``CliCommand`` s
and demo data. Found through the ``hygeia.pillars`` entry point ``devices``
(:mod:`.pillar`); it imports only the public APIs of ``hygeia.fhir``,
``hygeia.store`` and ``hygeia.server``.
"""
