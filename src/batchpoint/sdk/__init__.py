"""The Python SDK: ``MLClient`` and its operation groups. Speaks HTTP to a server only."""

from batchpoint.sdk.client import MLClient

__all__ = ["MLClient"]
