"""Masking of the variable parts of a log message per tenant, keeping compound tokens' shape.

A message is masked token by token (tokens are split on whitespace): one compiled alternation
regex per configuration replaces the variable parts of a token by `<NAME>` placeholders and
leaves its structure (`host:5070` -> `<HOST>:<NUM>`, `took=229ms` -> `took=<NUM>ms`,
`/users/42/cart` -> `/users/<NUM>/cart`, `job_17_0020` -> `job_<NUM>_<NUM>`). Tokens repeat a
lot, so each masker keeps a bounded cache token -> masked token and runs the regex on a token
only the first time it sees it. Only quoted strings can hold spaces: they are masked on the
whole line first (`"<STR>"`), so a quoted value never changes the token count. The order of
the alternatives is the precedence (a timestamp is not masked as three numbers, an IP not as
four). The miner treats placeholders as fixed tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# A token boundary: not glued to a letter or digit (so `R02` and `ext3` stay words, while the
# number in `blk_-42`, `port:8080` or `id=7` is masked).
_L = r"(?<![A-Za-z0-9])"
_R = r"(?![A-Za-z0-9])"
_NUMBER = r"[-+]?\d+(?:\.\d+)*"
_DURATION_UNIT = r"(?:ms|us|µs|ns|h|m|s|d)"

# name -> (placeholder, pattern), in precedence order; every pattern starts at a token
# boundary (the masker checks `_L` once before them).
BUILTIN_MASKERS: dict[str, tuple[str, str]] = {
    "timestamps": (
        "<TS>",
        r"(?:\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        r"|\d{2}:\d{2}:\d{2}(?:[.,:]\d+)?"
        # day and month names of ctime/syslog dates (`Fri Jul  1 07:57:30 2005`)
        r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec),?)"
        + _R,
    ),
    "uuids": (
        "<UUID>",
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _R,
    ),
    "emails": ("<EMAIL>", r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
    "urls": ("<URL>", r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+"),
    # host:port where the host is a dotted name or holds a digit (`localhost:80` keeps its
    # word); an IP host is the `ips` masker's
    "hostports": (
        "<HOST>:<NUM>",
        r"(?:[A-Za-z][\w-]*(?:\.[\w-]+)+|[A-Za-z][\w-]*\d[\w-]*):\d{1,5}" + _R,
    ),
    "ips": (
        "<IP>",
        r"(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}"
        r"|(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}"
        r"|(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?)" + r"(?![\w.])",
    ),
    # a whole path (2+ segments) as one token; off, a path keeps its segments and only the
    # ids in it are masked by the other maskers
    "paths": ("<PATH>", r"(?:~|\.{1,2})?(?:/[\w.@+~-]+){2,}/?" + r"(?![\w/])"),
    "hex": (
        "<HEX>",
        # 0x-prefixed, or 8+ hex digits with a letter, or zero-padded (fixed-width dumps)
        r"(?:0[xX][0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}"
        r"|\A0[0-9a-fA-F]{7,}\Z)" + _R,
    ),
    # 1h30m, 2m5.5s
    "durations": ("<DUR>", rf"(?:\d+(?:\.\d+)?{_DURATION_UNIT}){{2,}}" + _R),
    # the number of a number with a unit (229ms, 4.5GB, 80%): the unit stays
    "units": ("<NUM>", _NUMBER + r"(?=(?:[A-Za-zµ]{1,4}|%)(?![A-Za-z0-9]))"),
    # an id of letters and digits (u1234, req8f3a2c): 5+ characters, 3+ digits, at most 3
    # letters before the first digit (so ext4, ssh2, R02, base64 and orderflowa3f912 stay
    # words)
    "ids": ("<ID>", r"(?=[A-Za-z0-9]{5})(?=\d*[A-Za-z])[A-Za-z]{0,3}\d(?=(?:[A-Za-z]*\d){2})"
            r"[A-Za-z0-9]*" + _R),
    "numbers": ("<NUM>", _NUMBER + _R),
    # the value of key=value when no masker above took it (user=admin -> user=<VAL>)
    "values": ("<VAL>", r"(?<=[A-Za-z_]=)[^\s=,;&<>()\[\]{}]+(?=$|[,;&)\]}])"),
    # the text of a quoted string, spaces included (masked on the whole line, before the rest)
    "quoted": ('"<STR>"', r"(?<![\w\"'])(?:\"[^\"]*\"|'[^'\s][^']*')(?![\w\"'])"),
}

_QUOTED = re.compile(BUILTIN_MASKERS["quoted"][1])
_CACHE_SIZE = 1 << 13  # entries per cache of a masker (one masker per miner)


@dataclass(frozen=True)
class MaskingConfig:
    """Which maskers a tenant uses, plus its own `(placeholder, regex)` maskers (tried first).

    Every built-in masker is on by default except `values` (any value of `key=value`; by
    default only values another masker recognises). `paths` masks a whole path (2+ segments)
    as one `<PATH>`; off, a path keeps its segments and only the ids in it are masked
    (`/users/<NUM>/cart`). `quoted` masks the text of quoted strings. Extra maskers let a
    tenant mask its own identifiers (order numbers, host naming schemes) without code changes.
    """

    timestamps: bool = True
    uuids: bool = True
    emails: bool = True
    urls: bool = True
    hostports: bool = True
    ips: bool = True
    paths: bool = True
    hex: bool = True
    durations: bool = True
    units: bool = True
    ids: bool = True
    numbers: bool = True
    values: bool = False
    quoted: bool = True
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {name: getattr(self, name) for name in MASKER_NAMES}
        doc["extra"] = [list(pair) for pair in self.extra]
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> MaskingConfig:
        flags = {name: bool(doc[name]) for name in MASKER_NAMES if name in doc}
        raw_extra = doc.get("extra") or []
        assert isinstance(raw_extra, list)
        extra = tuple((str(p[0]), str(p[1])) for p in raw_extra)
        return cls(**flags, extra=extra)

    def masker(self) -> Masker:
        """The compiled masker of this configuration (compiled once per configuration; each
        call gives a masker with its own token cache)."""
        return Masker(self)


# Every switch of MaskingConfig (what `PATCH /api/v1/tenant {"pattern_masking": ...}` accepts).
MASKER_NAMES: tuple[str, ...] = tuple(BUILTIN_MASKERS)


# A built-in masker cannot match a token without all of one of its sets of signs (`digit`:
# any digit); `Masker` compiles, per combination of signs present, the alternation of the
# maskers that can match (the result is the same, only faster).
_SIGNS = ("digit", ":", ".", "/", "=", "@", "-", "::", "name")
_NEEDS: dict[str, tuple[frozenset[str], ...]] = {
    "timestamps": (frozenset({"digit", ":"}), frozenset({"digit", "-"}), frozenset({"name"})),
    "uuids": (frozenset({"-"}),),
    "emails": (frozenset({"@"}),),
    "urls": (frozenset({":", "/"}),),
    "hostports": (frozenset({"digit", ":"}),),
    "ips": (frozenset({"digit", "."}), frozenset({"digit", ":"}), frozenset({"::"})),
    "paths": (frozenset({"/"}),),
    "hex": (frozenset({"digit"}),),
    "durations": (frozenset({"digit"}),),
    "units": (frozenset({"digit"}),),
    "ids": (frozenset({"digit"}),),
    "numbers": (frozenset({"digit"}),),
    "values": (frozenset({"="}),),
}
_DIGITS = frozenset("0123456789")
_SHAPE = bytes.maketrans(b"0123456789", b"1111111111")
# a whole token that is a hex number (`0x..` and trailing punctuation, or zero-padded): no
# masker before `hex` can match it, and punctuation holds nothing to mask
_HEX_TOKEN = re.compile(r"0[xX][0-9a-fA-F]+([^A-Za-z0-9]*)|0[0-9a-fA-F]{7,}")
# a token whose masking may depend on where its zeros are, whatever its digits: `0x..`-like,
# or a whole token of 8+ hex digits that starts with a digit (zero-padded when it is a 0)
_RISKY = re.compile(r"\d[xX]|\A\d[0-9a-fA-F]{7,}\Z")




_DATE_NAMES = re.compile("Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
                         "|Dec")


# what a token without a digit needs for a built-in masker to match it (see `_NEEDS`): a sign
# of uuids, emails, urls, paths, values or IPv6, or a day or month name
_WORD_SIGNS = re.compile(r"[-@/=]|::|" + _DATE_NAMES.pattern)


def _signs(token: str) -> tuple[bool, ...]:
    return (not _DIGITS.isdisjoint(token), ":" in token, "." in token, "/" in token,
            "=" in token, "@" in token, "-" in token, "::" in token,
            _DATE_NAMES.search(token) is not None)


def token_regex(config: MaskingConfig, signs: tuple[bool, ...] | None = None
                ) -> tuple[re.Pattern[str] | None, list[str]]:
    """The token alternation of a configuration (only the built-in maskers that can match a
    token with `signs`, when given) and the placeholder of each group."""
    for _, pattern in config.extra:
        re.compile(pattern)  # raise re.error on a bad tenant regex, at configuration time
    present = None if signs is None else {s for s, on in zip(_SIGNS, signs, strict=True) if on}
    builtin = [spec for name, spec in BUILTIN_MASKERS.items()
               if name != "quoted" and getattr(config, name)
               and (present is None or any(need <= present for need in _NEEDS[name]))]
    parts = [*config.extra, *builtin]
    if not parts:
        return None, []
    groups = [f"(?P<m{i}>{pattern})" for i, (_, pattern) in enumerate(parts)]
    alternatives = groups[:len(config.extra)]
    if builtin:
        # every built-in masker starts at a token boundary: checking that once per position
        # skips the alternatives inside words
        alternatives.append(f"{_L}(?:{'|'.join(groups[len(config.extra):])})")
    return re.compile("|".join(alternatives)), [placeholder for placeholder, _ in parts]


@lru_cache(maxsize=4096)
def _compile(config: MaskingConfig, signs: tuple[bool, ...]
             ) -> tuple[re.Pattern[str] | None, list[str]]:
    return token_regex(config, signs)


class Masker:
    """`masker.tokens(text)` -> the masked tokens; `masker(text)` -> them joined by spaces.
    Keeps caches of masked tokens, token shapes and line shapes (each cleared when it reaches
    8,192 entries: a miner per tenant and partition keeps them, so they stay small)."""

    def __init__(self, config: MaskingConfig) -> None:
        token_regex(config)  # a bad tenant regex raises here
        self.config = config
        self.quoted = config.quoted
        self._plain_numbers = config.numbers and not config.extra
        self._plain_hex = config.hex and not config.extra
        self._plain_words = not config.extra
        self._cache: dict[str, str] = {}
        self._shapes: dict[str, str] = {}
        # line shape -> each position's masked token (None: mask that token on its own)
        self._lines: dict[bytes, tuple[str | None, ...]] = {}
        self._regexes: dict[tuple[bool, ...], tuple[re.Pattern[str] | None, list[str]]] = {}

    def _masked(self, token: str) -> str:
        if self._plain_words and _DIGITS.isdisjoint(token) and _WORD_SIGNS.search(token) is None:
            return token  # no built-in masker matches a token without a digit or these signs
        signs = _signs(token)
        try:
            regex, placeholders = self._regexes[signs]
        except KeyError:
            regex, placeholders = self._regexes[signs] = _compile(self.config, signs)
        if regex is None:
            return token
        return regex.sub(lambda m: placeholders[int(m.lastgroup[1:])],  # type: ignore[index]
                         token)

    def token(self, token: str, shape: str | None = None) -> str:
        """One token, masked. Variables make most tokens with digits unique, so such a token
        is masked through its shape (every digit read as 1: `blk_-42` and `blk_-97` share
        `blk_-11`), and only the shape is cached: when the shape's masked form keeps no digit,
        every digit was inside a masked span and the token's masked form is the same (the
        shape keeps the length of digit runs; an IP's octets are not range-checked through
        it). Tokens whose zeros matter (`0x1f`, zero-padded `00106210`) are masked directly.
        `shape`: the token's shape when the caller has it (a line's shape, split)."""
        got = self._cache.get(token)
        if got is not None:
            return got
        if self._plain_numbers and token.isascii() and token.isdigit() and (
                token[0] != "0" or len(token) < 8):
            return "<NUM>"
        if self._plain_hex and token[0] == "0":
            hexed = _HEX_TOKEN.fullmatch(token)
            if hexed is not None:  # 0x1f, 0x1f, or zero-padded 00106210: nothing else matches
                return "<HEX>" + (hexed.group(1) or "")
        if not (_DIGITS.isdisjoint(token) or "0x" in token or "0X" in token
                or token[0] == "0"):
            if shape is None:
                shape = token.encode().translate(_SHAPE).decode()
            got = self._shapes.get(shape)
            if got is None:
                if len(self._shapes) >= _CACHE_SIZE:
                    self._shapes.clear()
                masked = self._masked(shape)
                got = self._shapes[shape] = "" if not _DIGITS.isdisjoint(masked) else masked
            if got:
                return got
        got = self._masked(token)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = got
        return got

    def tokens(self, text: str) -> tuple[str, ...]:
        """The masked tokens of a text. A whole line is looked up by its shape first (lines
        of one event differ mostly in their digits): the entry holds each position's masked
        token, or None where it depends on more than the shape (zeros that matter: `0x1f`,
        zero-padded `00106210`; a word with digits that stays a word: `ssh2`), which is then
        masked token by token."""
        if self.quoted and ('"' in text or "'" in text):
            text = _QUOTED.sub(_quoted, text)
        shape = text.encode().translate(_SHAPE)
        entry = self._lines.get(shape)
        if entry is not None:
            if None not in entry:
                return entry  # type: ignore[return-value]
            token = self.token
            cache = self._cache
            return tuple([m if m is not None else cache.get(w) or token(w)
                          for m, w in zip(entry, text.split(), strict=True)])
        # the shape differs from the text only in ASCII digits (bytes that UTF-8 uses for
        # nothing else), so its words line up with the text's: a word equal to its shape has
        # no digit
        cache = self._cache
        shapes = self._shapes
        token = self.token
        digitless = _DIGITS.isdisjoint
        out: list[str] = []
        kept: list[str | None] = []
        for w, s in zip(text.split(), shape.decode().split(), strict=True):
            if w == s:  # no digit: a word
                m = cache.get(w) or token(w, s)
                out.append(m)
                kept.append(m)
                continue
            # what `token` does for a token with digits whose zeros do not matter: its
            # shape's masked form ("" when it keeps a digit)
            got = shapes.get(s) if w[0] != "0" and "0x" not in w and "0X" not in w else None
            m = got or token(w, s)
            out.append(m)
            kept.append(m if digitless(m) and not (
                ("x" in w or "X" in w or (len(w) >= 8 and w[0] in _DIGITS))
                and _RISKY.search(w)) else None)
        if len(self._lines) >= _CACHE_SIZE:
            self._lines.clear()
        self._lines[shape] = tuple(kept)
        return tuple(out)

    def __call__(self, text: str) -> str:
        return " ".join(self.tokens(text))


def _quoted(match: re.Match[str]) -> str:
    quote = match.group()[0]
    return f"{quote}<STR>{quote}"


def mask(text: str, config: MaskingConfig | None = None) -> str:
    """Mask `text` with `config` (the default maskers when None); tokens joined by a space."""
    return (config or DEFAULT_MASKING).masker()(text)


DEFAULT_MASKING = MaskingConfig()
