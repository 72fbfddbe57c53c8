"""Storage backends: one per storage kind behind ``base.StorageBackend``, a lazy registry, and the URL rules."""
