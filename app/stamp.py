"""The ingest stamp's signature: proof that a `logs.raw` record's tenant headers were written by
LaaS's own ingest (gateway, HTTP), not claimed by a direct producer.

The gateway and HTTP ingest resolve the API key, then stamp each message with `laas-tenant-id`,
`laas-tenant`, `laas-source` (and the idempotency headers) and `laas-signature`: an HMAC-SHA256,
under a key derived from the secret key (`LAAS_SECRET_KEY` or `state_dir/secret_key`), of the
message key, value and every `laas-*` header. The normalize stage trusts a tenant header only
with a valid signature; a record without one needs a `laas-api-key` header (docs/auth.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence

from app.settings import Settings

H_SIGNATURE = "laas-signature"
H_API_KEY = "laas-api-key"  # not signed: a direct producer's credential
_PURPOSE = b"laas-kafka-stamp-v1"


def _derive(secret: bytes) -> bytes:
    """A key of its own for stamps (the secret key also signs access tokens)."""
    return hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def _signed_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return sorted((name.lower(), value) for name, value in headers
                  if name.lower().startswith("laas-")
                  and name.lower() not in (H_SIGNATURE, H_API_KEY))


class Stamps:
    """Signs stamps with the current secret; accepts those of the current or previous ones
    (`LAAS_SECRET_KEYS_PREVIOUS`: records written before a rotation stay valid)."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self._keys = [_derive(secret), *(_derive(p) for p in previous)]

    @classmethod
    def from_settings(cls, settings: Settings) -> Stamps:
        from app.security import load_secret_key

        previous = [s.get_secret_value().encode() for s in settings.secret_keys_previous]
        return cls(load_secret_key(settings), previous)

    def _mac(self, key: bytes, message_key: bytes | None, value: bytes | None,
             headers: Iterable[tuple[str, bytes]]) -> str:
        mac = hmac.new(key, digestmod=hashlib.sha256)
        parts = [message_key or b"", value or b""]
        for name, header in _signed_headers(headers):
            parts += [name.encode(), header]
        for part in parts:  # length-prefixed: no two different inputs give the same bytes
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.hexdigest()

    def sign(self, message_key: bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """`headers` with the signature header added."""
        mac = self._mac(self._keys[0], message_key, value, headers)
        return [*headers, (H_SIGNATURE, mac.encode())]

    def valid(self, message_key: bytes | None, value: bytes | None,
              headers: Mapping[str, bytes]) -> bool:
        """Whether `headers` (names lower-cased) carry a signature of this message."""
        given = headers.get(H_SIGNATURE)
        if not given:
            return False
        pairs = list(headers.items())
        return any(hmac.compare_digest(self._mac(key, message_key, value, pairs).encode(), given)
                   for key in self._keys)
