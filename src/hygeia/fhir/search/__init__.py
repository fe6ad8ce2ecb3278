"""Backend-neutral search: parsed queries and the index values extracted from resources."""
