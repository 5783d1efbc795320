"""Signatures of LaaS's own Kafka messages: proof that a message was written by a LaaS process,
not by another producer on the same Kafka.

`laas-signature` is an HMAC-SHA256, under a key derived from the secret key (`LAAS_SECRET_KEY`
or `state_dir/secret_key`), of the message's kind (its topic: `raw`, `events`, `alerts`,
`rule-counts`), key, value and every `laas-*` header. The gateway and HTTP ingest sign the
tenant stamp they put on `logs.raw` after checking the API key, and the normalize stage trusts
a `laas-tenant-id` only with a valid signature (a direct producer sends `laas-api-key`); the
worker signs what it writes to `logs.events`, `alerts` and `rule-counts`, and every reader of
those topics drops what is not signed. So a producer that can write to the topics cannot put
logs or alerts into a tenant (docs/auth.md, threat model).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.kafka.headers import H_API_KEY, H_SIGNATURE
from app.settings import Settings

_PURPOSE = b"laas-kafka-stamp-v1"
# kinds of signed messages, one per topic
RAW, EVENTS, ALERTS, RULE_COUNTS = "raw", "events", "alerts", "rule-counts"


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
        from app.accounts.security import load_secret_key

        previous = [s.get_secret_value().encode() for s in settings.secret_keys_previous]
        return cls(load_secret_key(settings), previous)

    def _mac(self, key: bytes, kind: str, message_key: bytes | None, value: bytes | None,
             headers: Iterable[tuple[str, bytes]]) -> str:
        mac = hmac.new(key, digestmod=hashlib.sha256)
        parts = [kind.encode(), message_key or b"", value or b""]
        for name, header in _signed_headers(headers):
            parts += [name.encode(), header]
        for part in parts:  # length-prefixed: no two different inputs give the same bytes
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.hexdigest()

    def sign(self, message_key: bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]] = (), *, kind: str = RAW
             ) -> list[tuple[str, bytes]]:
        """`headers` with the signature of a message of `kind` added."""
        mac = self._mac(self._keys[0], kind, message_key, value, headers)
        return [*headers, (H_SIGNATURE, mac.encode())]

    def valid(self, message_key: bytes | None, value: bytes | None,
              headers: Mapping[str, bytes], *, kind: str = RAW) -> bool:
        """Whether `headers` (names lower-cased) carry a signature of this message of `kind`."""
        given = headers.get(H_SIGNATURE)
        if not given:
            return False
        pairs = list(headers.items())
        return any(hmac.compare_digest(
            self._mac(key, kind, message_key, value, pairs).encode(), given)
            for key in self._keys)

    def valid_message(self, message: Any, *, kind: str) -> bool:
        """`valid` for a Faust `Message` or an aiokafka `ConsumerRecord`."""
        return self.valid(message.key, message.value, headers_of(message.headers), kind=kind)


def headers_of(headers: Any) -> dict[str, bytes]:
    """Faust/aiokafka headers (list of pairs or mapping) as a dict, names lower-cased."""
    if not headers:
        return {}
    pairs: Iterable[tuple[str, Any]] = headers.items() if isinstance(headers, dict) else headers
    return {str(k).lower(): (v if isinstance(v, bytes) else str(v).encode())
            for k, v in pairs if v is not None}
