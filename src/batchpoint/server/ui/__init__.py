"""The web page at ``/ui`` (see ``router.py`` and docs/observability.md)."""
