"""Process tuning: how the loader and its workers use malloc, so large loads keep a flat memory
profile.
"""
