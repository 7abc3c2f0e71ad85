"""Masking of secret-looking keys (api keys, tokens, passwords, authorization, cookies) in nested data.

A key is judged by its words, whatever its case convention: `openaiApiKey`, `OPENAI_API_KEY`, `x-api-key`
and `X-Api-Key` all end in the words "api key". camelCase splits before a capital (an acronym ends before
the capital that starts the next word: `APIKey` is "api key"); any character but an ASCII letter or digit
separates words. The last word decides, so `max_tokens`, `tokens_used` and `token_count` are counts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")  # ASCII only: no IGNORECASE, no \d
# A key whose last word is one of these is secret: access_token, clientSecret, Set-Cookie, X-Auth.
SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "secrets",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "authorization",
        "auth",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "apikey",
        "secretkey",
        "privatekey",  # one word, as in APIKEY or x-apikey
    }
)
# ... except a singular "token" after one of these: max_token is a count, as max_tokens is.
COUNT_WORDS = frozenset({"max", "min", "num", "total"})
# "key" is secret after one of these only: api_key, privateKey, secret-key, aws_secret_access_key; not
# cache_key or idempotency_key.
KEY_QUALIFIERS = frozenset({"api", "private", "secret", "access", "auth"})
MASK = "***"

# may_hold_secrets: a secret key's lowered text contains its last word (or "key" and its qualifier), so
# JSON text with none of these substrings, and no \u escape that could spell one, holds no secret key.
# Substring tests on the lowered text: a case-insensitive regex alternation was 250 µs per 2 KB entry.
_STEMS = tuple(sorted(w.encode() for w in SECRET_WORDS if not any(o != w and o in w for o in SECRET_WORDS)))
_ESCAPE = b"\\u"
_KEY = b"key"
_URL_KEY = b"webhook"
_QUALIFIER_STEMS = tuple(q.encode() for q in sorted(KEY_QUALIFIERS))


def may_hold_secrets(raw: bytes) -> bool:
    """A fast, conservative test on JSON text: False means no key in it can be secret; True means look."""
    lowered = raw.lower()
    if _ESCAPE in lowered or _URL_KEY in lowered or any(stem in lowered for stem in _STEMS):
        return True
    return _KEY in lowered and any(q in lowered for q in _QUALIFIER_STEMS)


def key_words(key: str) -> tuple[str, ...]:
    """`openaiApiKey` → ("openai", "api", "key"); `X-API-KEY` → ("x", "api", "key")."""
    return tuple(w.lower() for w in _WORD.findall(key))


def secret_words(words: tuple[str, ...]) -> bool:
    if not words:
        return False
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if last == "key":
        return before in KEY_QUALIFIERS
    if last == "token":
        return before not in COUNT_WORDS
    return last in SECRET_WORDS


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    return secret_words(key_words(key))


def has_secrets(value: Any) -> bool:
    """Whether mask(value) would change anything. Several times cheaper than mask() (a loop, nothing
    copied), so bulk readers (export) pass stored JSON through as it is when it holds no secret."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and v not in (None, "") and is_secret_key(k):
                    return True
                if k in URL_KEYS and isinstance(v, str) and mask_url(v) != v:
                    return True
                if isinstance(v, (dict, list, tuple)):
                    stack.append(v)
        else:
            stack.extend(v for v in item if isinstance(v, (dict, list, tuple)))
    return False


def mask(value: Any) -> Any:
    """A copy of `value` with every secret-looking key's value replaced by ***."""
    if isinstance(value, dict):
        return {
            k: (
                MASK
                if isinstance(k, str) and is_secret_key(k) and v not in (None, "")
                else mask_url(v)
                if k in URL_KEYS and isinstance(v, str)
                else mask(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value


# --- URLs that may carry credentials ----------------------------------------------------------------------
# A webhook URL is shown (jobs show, the API, DLQ entries, events, logs) without its user info and without the
# values of query parameters whose names say secret (`?token=…`, `?sig=…`): the value under a key named
# `webhook` is masked so by mask() itself, wherever it is nested.
URL_KEYS = frozenset({"webhook"})
SECRET_PARAMS = frozenset({"sig", "signature", "code", "key", "apikey", "secret", "token", "auth", "password"})


def mask_url(url: str) -> str:
    """`https://user:pw@host/p?token=abc&x=1` → `https://***@host/p?token=***&x=1`."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='')}="
            + (MASK if k.lower() in SECRET_PARAMS or is_secret_key(k) else urllib.parse.quote(v, safe=""))
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# --- by value --------------------------------------------------------------------------------------------
# Masking by key name cannot see a token inside text: an SDK's "Illegal header value b'Bearer sk-…\n'", a
# provider echoing the request in its error body, a traceback. So the values themselves are removed from any
# text genqueue writes (error messages, tracebacks, history, DLQ entries, log lines), before it is cut to
# length: the values of the environment's secret-named variables (OPENAI_API_KEY, GENQUEUE_PROVIDER_TOKEN,
# GENQUEUE_API_JWT_SECRET, …, the same rule as for keys) and any value a provider registers with remember().
ENV_NOT_SECRET = frozenset({"PWD", "OLDPWD"})  # "pwd" is a password's word, but these are directories
MIN_SECRET_LEN = 8  # shorter values are not scrubbed: "***" for every "true" or "1234" would wreck the text
_remembered: set[str] = set()
_values: tuple[str, ...] | None = None
_env_seen: int | None = None


def remember(value: str | None) -> None:
    """Scrub this value (and its stripped form) from every text from now on, in this process."""
    global _values
    for form in _forms(value):
        if form not in _remembered:
            _remembered.add(form)
            _values = None


def _forms(value: str | None) -> list[str]:
    if not isinstance(value, str):
        return []
    forms = {value, value.strip(), value.encode("unicode_escape").decode("ascii", "replace")}
    return [f for f in forms if len(f.strip()) >= MIN_SECRET_LEN]


def secret_values() -> tuple[str, ...]:
    """What scrub() removes, longest first (a secret that contains another is removed whole)."""
    global _values, _env_seen
    import os

    # The environment's fingerprint, taken on every scrub (three RQ log lines per job): os.environ's own dict
    # of bytes hashes in ~3 µs, its decoding Mapping view in ~30 µs (35 variables).
    raw = getattr(os.environ, "_data", None)
    seen = hash(frozenset((raw if isinstance(raw, dict) else os.environ).items()))
    if _values is None or seen != _env_seen:
        found = set(_remembered)
        for name, value in os.environ.items():
            if name not in ENV_NOT_SECRET and is_secret_key(name):
                found.update(_forms(value))
        _values, _env_seen = tuple(sorted(found, key=len, reverse=True)), seen
    return _values


def scrub(text: str) -> str:
    """`text` with every known secret value replaced by ***."""
    if not isinstance(text, str) or not text:
        return text
    for secret in secret_values():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_data(value: Any) -> Any:
    """scrub() over every string in nested data (keys too)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_data(v) for v in value)
    return value


# The provider credentials genqueue itself reads: checked at every worker's start whatever the provider, since
# your own tasks may send them too.
CREDENTIAL_VARIABLES = ("GENQUEUE_PROVIDER_TOKEN", "OPENAI_API_KEY")


def check_credentials(environ: Mapping[str, str]) -> None:
    """InvalidInput (exit 2) naming the first credential variable with whitespace in its value."""
    for name in CREDENTIAL_VARIABLES:
        check_credential(name, environ.get(name))


def check_credential(name: str, value: str | None) -> str | None:
    """A credential read from the environment: whitespace or a newline in it (a secret file's trailing
    newline) makes every call fail with the value in the error, so it is refused — naming the variable only."""
    from ..errors import InvalidInput

    if value and any(c.isspace() for c in value):
        raise InvalidInput(f"{name} contains whitespace or a newline (a secret file's trailing newline?): remove it")
    remember(value)
    return value
