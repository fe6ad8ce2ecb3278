"""`hygeia load`: files parsed and validated by worker processes, written in large
transactions, resumable through the load journal.
"""
