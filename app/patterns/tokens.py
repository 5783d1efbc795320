"""From a message to the token list the miner works on: cap, mask, split on whitespace."""

from __future__ import annotations

from app.patterns.masking import MaskingConfig

WILDCARD = "<*>"
_DIGITS = frozenset("0123456789")


def is_variable_like(token: str) -> bool:
    """A token that probably varies (has a digit, or is already a wildcard): never a branch key."""
    return token == WILDCARD or not _DIGITS.isdisjoint(token)


class Tokenizer:
    """`tokenizer(message)` -> masked tokens; at most `max_tokens` (the rest become one `<*>`)."""

    def __init__(self, masking: MaskingConfig, max_tokens: int, max_chars: int) -> None:
        if max_tokens < 2:
            raise ValueError("max_tokens must be at least 2")
        self._mask = masking.masker()
        self._max_tokens = max_tokens
        self._max_chars = max_chars

    def __call__(self, message: str) -> list[str]:
        tokens = self._mask(message[: self._max_chars]).split()
        if len(tokens) > self._max_tokens:
            tokens = [*tokens[: self._max_tokens - 1], WILDCARD]
        return tokens
