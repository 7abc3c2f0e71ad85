"""The webhook URL rules (pure: the resolver is a dict), and how a URL is shown."""

from __future__ import annotations

import pytest

from genqueue.errors import InvalidInput
from genqueue.support.secrets import mask, mask_url
from genqueue.webhooks.urls import AllowList, check_url

DNS = {
    "hooks.example.com": ["93.184.216.34"],
    "rebound.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
    "internal.corp": ["10.0.0.7"],
}


def resolve(host: str) -> list[str]:
    if host not in DNS:
        raise InvalidInput(f"webhook host {host!r} does not resolve")
    return DNS[host]


def check(url: str, allow: str = "") -> str:
    return check_url(url, AllowList.parse(allow), resolve)


def test_public_https_is_allowed_by_default():
    assert check("https://hooks.example.com/in?x=1") == "https://hooks.example.com/in?x=1"
    assert check("https://93.184.216.34/in")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/in", "must use https"),
        ("https://127.0.0.1/in", "loopback, private or link-local"),
        ("https://[::1]/in", "loopback, private or link-local"),
        ("https://169.254.169.254/latest", "loopback, private or link-local"),
        ("https://10.0.0.5/in", "loopback, private or link-local"),
        ("https://192.168.1.10/in", "loopback, private or link-local"),
        ("https://[::ffff:127.0.0.1]/in", "loopback, private or link-local"),
        ("https://0.0.0.0/in", "loopback, private or link-local"),
        ("https://rebound.example.com/in", "loopback, private or link-local"),
        ("https://mixed.example.com/in", "loopback, private or link-local"),
        ("https://nowhere.invalid/in", "does not resolve"),
        ("ftp://hooks.example.com/in", "must be http(s)"),
        ("https:///in", "must be http(s)"),
        ("https://hooks.example.com:99999/in", "bad port"),
        ("https://hooks.example.com/a b", "invalid"),
        ("", "must be a URL"),
    ],
)
def test_refused_with_one_line(url, says):
    with pytest.raises(InvalidInput) as err:
        check(url)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_listed_hosts_may_use_http_and_private_addresses():
    allow = "127.0.0.1,internal.corp,*.svc.local,10.9.0.0/16"
    assert check("http://127.0.0.1:8080/hook", allow)
    assert check("http://internal.corp/hook", allow)
    assert check("http://a.b.svc.local/hook", allow)
    assert check("http://10.9.3.4/hook", allow)


def test_a_list_without_star_allows_only_the_listed_hosts():
    with pytest.raises(InvalidInput, match="not in GENQUEUE_WEBHOOK_ALLOW"):
        check("https://hooks.example.com/in", "127.0.0.1")
    assert check("https://hooks.example.com/in", "*,127.0.0.1")
    with pytest.raises(InvalidInput, match="loopback, private"):
        check("https://10.0.0.5/in", "*,127.0.0.1")


def test_a_bad_allow_entry_is_one_line():
    with pytest.raises(InvalidInput, match="GENQUEUE_WEBHOOK_ALLOW"):
        AllowList.parse("good.host, bad host!")


def test_credentials_and_query_secrets_are_masked_wherever_shown():
    url = "https://user:pa55word@hooks.example.com/in?token=abc123&sig=s1&page=2&api_key=k"
    shown = mask_url(url)
    assert shown == "https://***@hooks.example.com/in?token=***&sig=***&page=2&api_key=***"
    assert mask({"meta": {"webhook": url}})["meta"]["webhook"] == shown
    with pytest.raises(InvalidInput) as err:
        check("http://user:pa55word@hooks.example.com/in?token=abc123")
    assert "pa55word" not in str(err.value) and "abc123" not in str(err.value)


def test_a_plain_url_is_shown_as_it_is():
    assert mask_url("https://hooks.example.com/in?page=2") == "https://hooks.example.com/in?page=2"


def test_a_checked_host_is_called_at_the_address_checked():
    from genqueue.webhooks.urls import checked, pinned

    url, addresses = checked("https://hooks.example.com:8443/in?x=1", AllowList.parse(""), resolve)
    assert addresses == ["93.184.216.34"]
    target, headers, extensions = pinned(url, addresses[0])
    assert target == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"host": "hooks.example.com:8443"} and extensions == {"sni_hostname": "hooks.example.com"}
    assert pinned("https://h.example/x", "2606:2800:220:1::1")[0] == "https://[2606:2800:220:1::1]/x"
    assert checked("http://127.0.0.1:9/x", AllowList.parse("127.0.0.1"), resolve)[1] == []  # listed: as it is
