"""Metrics, structured logging and secret redaction; imports nothing else of the project."""
