"""Identities and credentials Batchpoint holds on behalf of users.

* :mod:`batchpoint.identity.secrets` — the server key file, ``SecretBox`` (Fernet encryption of
  data store secrets at rest, HKDF-derived purpose keys), and ``split_secrets`` to separate the
  secret fields of a credential from the ones that may be stored in clear and shown.
"""
