"""Masking by key name in any case convention, and the export pre-filter that must never miss one."""

from __future__ import annotations

import json

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from genqueue.support.secrets import is_secret_key, key_words, mask, may_hold_secrets

SECRET = [
    "apiKey",
    "api_key",
    "API-KEY",
    "APIKey",
    "APIKEY",
    "x-api-key",
    "X-Api-Key",
    "x_apikey",
    "accessToken",
    "access_token",
    "openaiApiKey",
    "OPENAI_API_KEY",
    "clientSecret",
    "client_secret",
    "refreshToken",
    "password",
    "Password",
    "db.password",
    "passwd",
    "authorization",
    "Authorization",
    "Proxy-Authorization",
    "x-auth",
    "privateKey",
    "private-key",
    "secret_key",
    "sessionToken",
    "bearerToken",
    "id_token",
    "credentials",
    "credential",
    "cookie",
    "Cookie",
    "set-cookie",
    "Set-Cookie",
    "aws_secret_access_key",
    "token",
    "TOKEN",
    "s3Secret",
]
PLAIN = [
    "max_tokens",
    "maxTokens",
    "max_token",
    "tokens_used",
    "total_tokens",
    "token_count",
    "tokenizer",
    "token_type",
    "prompt",
    "author",
    "authorName",
    "oauth_provider",
    "key",
    "cache_key",
    "idempotencyKey",
    "keywords",
    "password_hash",
    "secretariat",
    "temperature",
    "",
    "_",
    "123",
]


@pytest.mark.parametrize("key", SECRET)
def test_secret_keys_are_masked_in_every_case_convention(key):
    assert is_secret_key(key), key_words(key)
    assert mask({"params": {key: "s3cr3t"}}) == {"params": {key: "***"}}
    assert may_hold_secrets(json.dumps({key: "s3cr3t"}).encode())


@pytest.mark.parametrize("key", PLAIN)
def test_counts_and_lookalikes_stay_as_they_are(key):
    assert not is_secret_key(key), key_words(key)
    assert mask({key: 5}) == {key: 5}


def test_camel_case_acronyms_and_separators_split_into_words():
    assert key_words("openaiApiKey") == ("openai", "api", "key")
    assert key_words("APIKey") == ("api", "key")
    assert key_words("X-API-KEY") == key_words("x_api__key") == key_words("x.api key") == ("x", "api", "key")
    assert key_words("oauth2AccessToken") == ("oauth", "2", "access", "token")


WORDS = st.sampled_from(
    [
        "api",
        "key",
        "token",
        "tokens",
        "secret",
        "private",
        "access",
        "auth",
        "author",
        "password",
        "pass",
        "word",
        "cookie",
        "set",
        "max",
        "count",
        "client",
        "openai",
        "x",
        "credentials",
        "apikey",
        "pwd",
        "passphrase",
        "id",
        "2",
    ]
)


@st.composite
def cased(draw) -> str:
    """A word in any case: lower, UPPER, Title, or each letter drawn."""
    word = draw(WORDS | st.text(min_size=1, max_size=6))
    style = draw(st.sampled_from(["lower", "upper", "title", "mixed"]))
    if style != "mixed":
        return getattr(word, style)()
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)


SEPARATORS = st.sampled_from(["", "_", "-", ".", " ", "__", "-_", ":", "/", "é", "\u212a"])


@st.composite
def keys(draw) -> str:
    parts = draw(st.lists(cased(), min_size=1, max_size=5))
    key = parts[0]
    for part in parts[1:]:
        key += draw(SEPARATORS) + part
    return key


@settings(max_examples=3000, deadline=None)
@given(keys())
def test_the_prefilter_never_misses_a_secret_key(key):
    if is_secret_key(key):
        event("secret")
        for text in (json.dumps({key: "v"}), json.dumps({key: "v"}, ensure_ascii=False)):
            assert may_hold_secrets(text.encode()), text
        assert mask({key: "v"}) == {key: "***"}
