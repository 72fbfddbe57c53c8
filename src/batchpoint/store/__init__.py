"""The metadata store: the SQL schema (``tables``), its migrations, and ``SqlMetadataStore``."""
