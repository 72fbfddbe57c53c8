"""Internal helpers shared across Batchpoint; not a public API.

* :mod:`batchpoint._internal.redact` — mask secrets in strings, nested data and log records.
* :mod:`batchpoint._internal.netguard` — refuse hosts/URLs that point at loopback, link-local,
  private or metadata addresses (SSRF guard).
"""
