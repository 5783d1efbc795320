"""Masking of the variable parts of a log message (numbers, IPs, UUIDs, paths, ...) per tenant.

One compiled alternation regex per configuration does all maskers in a single pass (built-in
maskers that cannot match the text, e.g. emails without an `@`, are left out of it: one
compiled variant per configuration and set of such signs present); the order of the
alternatives is the precedence (a timestamp is not masked as three numbers, an IP not as
four). Masked spans become `<NAME>` placeholders; the miner then treats them as fixed tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

# A token boundary: not glued to a letter or digit (so `R02` and `ext3` stay words, while the
# number in `blk_-42`, `port:8080` or `id=7` is masked).
_L = r"(?<![A-Za-z0-9])"
_R = r"(?![A-Za-z0-9])"

# name -> (placeholder, pattern), in precedence order.
BUILTIN_MASKERS: dict[str, tuple[str, str]] = {
    "timestamps": (
        "<TS>",
        _L + r"(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
        r"|\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)" + _R,
    ),
    "uuids": (
        "<UUID>",
        _L + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _R,
    ),
    "emails": ("<EMAIL>", r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
    "urls": ("<URL>", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+"),
    "ips": (
        "<IP>",
        _L + r"(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}"
        r"|(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}"
        r"|(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?)" + r"(?![\w.])",
    ),
    "paths": ("<PATH>", r"(?<![\w/.:<>-])(?:~|\.{1,2})?(?:/[\w.@+~-]+){2,}/?"),
    "hex": (
        "<HEX>",
        # 0x-prefixed, or 8+ hex digits with a letter, or zero-padded (fixed-width dumps)
        _L + r"(?:0[xX][0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}"
        r"|0[0-9a-fA-F]{7,})" + _R,
    ),
    "numbers": ("<NUM>", r"(?<![A-Za-z0-9])[-+]?\d+(?:\.\d+)*(?![A-Za-z0-9])"),
}


@dataclass(frozen=True)
class MaskingConfig:
    """Which maskers a tenant uses, plus its own `(placeholder, regex)` maskers (tried first).

    Every built-in masker is on by default. Extra maskers let a tenant mask its own identifiers
    (order numbers, host naming schemes) without code changes.
    """

    timestamps: bool = True
    uuids: bool = True
    emails: bool = True
    urls: bool = True
    ips: bool = True
    paths: bool = True
    hex: bool = True
    numbers: bool = True
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {name: getattr(self, name) for name in BUILTIN_MASKERS}
        doc["extra"] = [list(pair) for pair in self.extra]
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> MaskingConfig:
        flags = {name: bool(doc[name]) for name in BUILTIN_MASKERS if name in doc}
        raw_extra = doc.get("extra") or []
        assert isinstance(raw_extra, list)
        extra = tuple((str(p[0]), str(p[1])) for p in raw_extra)
        return cls(**flags, extra=extra)

    def masker(self) -> Callable[[str], str]:
        """The compiled masking function for this configuration (cached per configuration)."""
        return _compile(self)


class Masker:
    """A compiled configuration: `masker(text)` returns the text with variables replaced."""

    def __init__(self, config: MaskingConfig) -> None:
        for _, pattern in config.extra:
            re.compile(pattern)  # raise re.error on a bad tenant regex, at configuration time
        parts = [*config.extra, *(spec for name, spec in BUILTIN_MASKERS.items()
                                  if getattr(config, name))]
        self.placeholders = [placeholder for placeholder, _ in parts]
        groups = [f"(?P<m{i}>{pattern})" for i, (_, pattern) in enumerate(parts)]
        self._extra = groups[:len(config.extra)]
        self._builtin = [(name, groups[len(config.extra) + i]) for i, name in
                         enumerate(n for n in BUILTIN_MASKERS if getattr(config, n))]
        self._regexes: dict[tuple[bool, ...], re.Pattern[str] | None] = {}

    def _alternation(self, present: tuple[bool, ...]) -> re.Pattern[str] | None:
        """The extra maskers and the built-in ones that can match a text holding the
        `_SIGNS` marked `present`, as one regex."""
        signs = {sign for sign, there in zip(_SIGNS, present, strict=True) if there}
        builtin = [group for name, group in self._builtin
                   if name not in _NEEDS or signs & _NEEDS[name]]
        alternatives = list(self._extra)
        if builtin:
            # every built-in masker starts at a token boundary (its own lookbehind rules out
            # a letter or digit before it): checking that once per position first skips the
            # alternatives inside words; the matches are the same
            alternatives.append(f"{_L}(?:{'|'.join(builtin)})")
        return re.compile("|".join(alternatives)) if alternatives else None

    def _replace(self, match: re.Match[str]) -> str:
        return self.placeholders[int(match.lastgroup[1:])]  # type: ignore[index]

    def __call__(self, text: str) -> str:
        # built-in maskers that cannot match this text (no `@`: no email) are left out of
        # the alternation: at most 2**6 variants, each compiled once when first needed
        present = ("@" in text, "://" in text, "-" in text, "/" in text, ":" in text,
                   "." in text)
        try:
            regex = self._regexes[present]
        except KeyError:
            regex = self._regexes[present] = self._alternation(present)
        return text if regex is None else regex.sub(self._replace, text)


# A built-in masker cannot match a text that holds none of its substrings (`Masker.__call__`
# checks the `_SIGNS`, in this order).
_SIGNS = ("@", "://", "-", "/", ":", ".")
_NEEDS: dict[str, set[str]] = {
    "emails": {"@"}, "urls": {"://"}, "uuids": {"-"}, "paths": {"/"}, "timestamps": {":"},
    "ips": {".", ":"},
}


@lru_cache(maxsize=256)
def _compile(config: MaskingConfig) -> Masker:
    return Masker(config)


def mask(text: str, config: MaskingConfig | None = None) -> str:
    """Mask `text` with `config` (all built-in maskers when None)."""
    return (config or DEFAULT_MASKING).masker()(text)


DEFAULT_MASKING = MaskingConfig()
