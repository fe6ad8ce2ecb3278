"""The ``hygeia`` command line: serve, load, validate."""
