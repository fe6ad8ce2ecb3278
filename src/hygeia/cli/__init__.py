"""The ``hygeia`` command line: serve, load, validate, db, auth, and the commands pillars add."""
