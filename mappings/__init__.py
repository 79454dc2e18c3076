"""Index mappings, search pipelines and Painless scripts, kept as data files (read as package resources)."""
