"""The ``batchpoint`` command line, shaped like ``az ml``. It only uses the SDK."""
