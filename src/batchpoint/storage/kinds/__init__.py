"""One module per storage kind, each declaring ``KIND`` (:class:`batchpoint.storage.kind.StorageKind`);
listed in :data:`batchpoint.storage.registry.KIND_MODULES`. No optional library is imported here."""
