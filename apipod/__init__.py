"""APIPod: put a Python model behind an HTTP API with a restart-safe job queue."""

__version__ = "0.1.0"
