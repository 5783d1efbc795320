"""Plain Python values as laas.v1 `AnyValue`s (the server's conversions use this one too)."""

from __future__ import annotations

from laas_client.v1 import AnyValue, ArrayValue, KeyValueList

INT64 = 2**63


def to_any(value: object) -> AnyValue:
    """A plain Python/JSON value as an `AnyValue` (None → an empty value)."""
    if isinstance(value, AnyValue):
        return value
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value) if -INT64 <= value < INT64 else AnyValue(
            string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes | bytearray):
        return AnyValue(bytes_value=bytes(value))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values={str(k): to_any(v)
                                                          for k, v in value.items()}))
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[to_any(v) for v in value]))
    return AnyValue(string_value=str(value))
