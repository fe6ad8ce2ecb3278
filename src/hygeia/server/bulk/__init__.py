"""Bulk Data Access: the `$export` kick-off and export job, and `$import` of NDJSON files."""
