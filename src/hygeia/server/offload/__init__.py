"""The offload helper: a separate process that parses, validates and indexes large request
bodies so the server's threads stay responsive.
"""
