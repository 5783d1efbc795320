"""Both protobuf runtimes of `laas.v1.LogRecord`: betterproto (the API) and upb (the hot path).

The code works with the betterproto classes in `protos.laas.v1`; the gRPC gateway parses and
re-serializes batches with the C-backed `protobuf` classes of `protos/laas/v1/logs_pb2.py`
instead, which is about a hundred times faster per record. Validation and the Kafka writer take
either kind through the helpers here.
"""

from __future__ import annotations

from typing import Any

import betterproto

from protos.laas.v1 import logs_pb2 as pb

__all__ = ["encode", "has_field", "is_pb", "pb", "size_of", "which"]


def is_pb(message: object) -> bool:
    """True for a `protobuf` (upb) message, False for a betterproto one."""
    return not isinstance(message, betterproto.Message)


def encode(message: Any) -> bytes:
    """The serialized bytes of a message of either kind."""
    if isinstance(message, betterproto.Message):
        return bytes(message)
    data: bytes = message.SerializeToString()
    return data


def size_of(message: Any) -> int:
    """Serialized size in bytes."""
    if isinstance(message, betterproto.Message):
        return len(bytes(message))
    size: int = message.ByteSize()
    return size


def has_field(parent: Any, name: str) -> bool:
    """Whether the sub-message `name` of `parent` is set (was on the wire)."""
    if isinstance(parent, betterproto.Message):
        return betterproto.serialized_on_wire(getattr(parent, name))
    present: bool = parent.HasField(name)
    return present


def which(value: Any) -> tuple[str, Any]:
    """The set member of an `AnyValue` of either kind and its value ("" and None when empty)."""
    which_oneof = getattr(value, "WhichOneof", None)  # upb; first: isinstance of an ABC is slow
    if which_oneof is None:
        return betterproto.which_one_of(value, "value")
    kind = which_oneof("value")
    return (kind, getattr(value, kind)) if kind else ("", None)
