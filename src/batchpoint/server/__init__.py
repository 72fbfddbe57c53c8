"""The REST server: ``create_app(settings)`` and ``python -m batchpoint.server``."""

from batchpoint.server.app import create_app

__all__ = ["create_app"]
