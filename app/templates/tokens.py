"""From a message to the token list the miner works on: cap, mask, split on whitespace."""

from __future__ import annotations

from app.templates.masking import MaskingConfig

WILDCARD = "<*>"
_DIGITS = frozenset("0123456789")


def is_variable_like(token: str) -> bool:
    """A token that probably varies, so never a branch key of the tree: a wildcard, a token
    with a digit, or a compound token holding a placeholder (`<HOST>:<NUM>`, `user=<VAL>`,
    `blk_<NUM>`: the part around the placeholder varies as often as not). A placeholder on
    its own (`<NUM>`) is a fixed token."""
    return token == WILDCARD or not _DIGITS.isdisjoint(token) or is_compound_variable(token)


def is_compound_variable(token: str) -> bool:
    """A placeholder inside other text (`blk_<NUM>`, `<IP>:<NUM>`, `id=<HEX>`): not a
    placeholder alone, not a wildcard."""
    at = token.find("<")
    return at >= 0 and token != WILDCARD and not (
        at == 0 and token.endswith(">") and token.count("<") == 1)


def collapse_lists(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """A list of values of one kind (`blk_<NUM> blk_<NUM> blk_<NUM>`: one compound variable
    token repeated in a row) becomes one token, so the length of a list does not change the
    template. A placeholder alone repeated (`<NUM> <NUM>`) is left: that is as often two
    fields as a list."""
    out: list[str] | None = None
    prev = ""
    for at, token in enumerate(tokens):
        if token == prev and is_compound_variable(token):
            if out is None:
                out = list(tokens[:at])
            continue
        if out is not None:
            out.append(token)
        prev = token
    return tokens if out is None else tuple(out)


class Tokenizer:
    """`tokenizer(message)` -> masked tokens (a tuple), lists collapsed (`collapse_lists`);
    at most `max_tokens` (the rest become one `<*>`)."""

    def __init__(self, masking: MaskingConfig, max_tokens: int, max_chars: int) -> None:
        if max_tokens < 2:
            raise ValueError("max_tokens must be at least 2")
        self.masker = masking.masker()
        self._tokens = self.masker.tokens
        self._max_tokens = max_tokens
        self._max_chars = max_chars

    def __call__(self, message: str) -> tuple[str, ...]:
        tokens = collapse_lists(self._tokens(message[: self._max_chars]))
        if len(tokens) > self._max_tokens:
            tokens = (*tokens[: self._max_tokens - 1], WILDCARD)
        return tokens
