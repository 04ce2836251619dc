"""Herald's HTTP API: ingest, and later campaigns, labels, segments and reports."""

from api.main import create_app

__all__ = ["create_app"]
