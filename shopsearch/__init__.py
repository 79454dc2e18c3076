"""shopsearch: an AI search layer in front of a shop's OpenSearch."""

__version__ = "0.1.0"
