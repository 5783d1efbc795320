"""Password policy (NIST SP 800-63B): length, characters and a blocklist of guessable passwords.

No composition rules (no "one digit, one symbol"): a password is refused only when it is too
short or too long, is made only of whitespace, holds control characters (NUL, escape, ...), or is
easy to guess. "Easy to guess" is decided by zxcvbn (a kept library, `zxcvbn` on PyPI): its list
of the 30,000 most common passwords from breach corpuses, dictionary words, names, keyboard
patterns, repeats and sequences (`aaaaaaaa`, `12345678`, `qwertyuiop`), leetspeak variants
(`P@ssw0rd`) and context words (the email, the product name). Checked before hashing, when a
password is set; never at login (a stored password keeps working).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# zxcvbn's estimate of the guesses an attacker needs; below 10^6 is its score 0-1 ("too
# guessable", "very guessable"): online guessing at a few tries a minute per address reaches it.
MIN_GUESSES = 10**6
ZXCVBN_MAX = 72
CONTEXT_WORDS = ("laas", "logging", "logs")
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])


def context_words(email: str | None) -> list[str]:
    """Words a password must not be built on: the product's and the account's email."""
    words = list(CONTEXT_WORDS)
    if email:
        local, _, domain = email.lower().partition("@")
        words += [email.lower(), local, *domain.split(".")]
    return [w for w in words if w]


def password_problem(password: str, context: Iterable[str] = ()) -> str | None:
    """Why `password` is refused, or None when it is acceptable."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in password):
        return "password must not contain control characters (NUL, tab, escape, ...)"
    if not password.strip():
        return "password must not be only whitespace"
    lowered = password.lower()
    words = [w.lower() for w in context]
    if lowered in _COMMON:
        return "password is one of the most common passwords; choose another"
    if lowered in words:
        return "password must not be the email address or the product's name"
    # zxcvbn refuses longer inputs; the first 72 characters decide for a long passphrase
    result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=words)
    if float(result["guesses"]) < MIN_GUESSES:
        warning = result["feedback"].get("warning") or "it would be guessed quickly"
        return f"password is too easy to guess ({warning.rstrip('.').lower()}); a few " \
               "unrelated words make a strong one"
    return None
