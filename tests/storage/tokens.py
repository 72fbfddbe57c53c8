"""An unsigned bearer token that Azurite's ``--oauth basic`` accepts (it checks audience, issuer
and expiry, not the signature), served by an object with ``get_token`` like azure-identity's."""

from __future__ import annotations

import base64
import json
import time

from azure.core.credentials import AccessToken


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class StaticTokenCredential:
    def __init__(self, lifetime: int = 3600) -> None:
        self.lifetime = lifetime
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
            "iat": now - 60, "nbf": now - 60, "exp": now + self.lifetime,
            "oid": "23657296-5cd5-45b0-a809-d972a7f4dfe1",
            "tid": "dd0d0df1-06c3-436c-8034-4b9a153097ce",
        }
        token = f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"
        return AccessToken(token, now + 3600)
