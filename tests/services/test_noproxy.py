"""Exclude-list matching against the semantics documented in fastnet.services.noproxy."""

from __future__ import annotations

import doctest

import pytest

from fastnet.errors import ConfigError
from fastnet.services import noproxy
from fastnet.services.noproxy import NoProxy

# (exclude list, host, port, expected)
TABLE = [
    # domains match themselves and their subdomains, with or without a leading dot or "*."
    ("example.com", "example.com", None, True),
    ("example.com", "www.example.com", None, True),
    ("example.com", "a.b.example.com", 443, True),
    ("example.com", "badexample.com", None, False),
    ("example.com", "example.com.evil.net", None, False),
    ("example.com", "com", None, False),
    (".example.com", "example.com", None, True),
    (".example.com", "www.example.com", None, True),
    (".example.com", "wwwexample.com", None, False),
    ("*.example.com", "example.com", None, True),
    ("*.example.com", "x.example.com", None, True),
    ("*.local", "printer.local", None, True),
    # case and trailing dots do not matter
    ("Example.COM", "WWW.example.com.", None, True),
    ("example.com.", "example.com", None, True),
    # separators: commas, spaces, tabs, newlines, in any mix; empty items ignored
    ("a.test, b.test\tc.test\n,,d.test", "c.test", None, True),
    ("a.test, b.test\tc.test\n,,d.test", "d.test", None, True),
    ("a.test, b.test\tc.test\n,,d.test", "e.test", None, False),
    # "*" alone matches everything
    ("*", "anything.example", None, True),
    ("*", "10.1.2.3", 80, True),
    ("a.test,*", "b.test", None, True),
    # IP addresses match exactly; names are not resolved
    ("10.1.2.3", "10.1.2.3", None, True),
    ("10.1.2.3", "10.1.2.4", None, False),
    ("10.1.2.3", "host.example", None, False),
    ("::1", "::1", None, True),
    ("[::1]", "::1", None, True),
    ("[::1]", "[::1]", None, True),
    ("::1", "::2", None, False),
    # CIDR ranges
    ("10.0.0.0/8", "10.200.3.4", None, True),
    ("10.0.0.0/8", "11.0.0.1", None, False),
    ("192.168.1.0/24", "192.168.1.255", None, True),
    ("192.168.1.0/24", "192.168.2.1", None, False),
    ("fd00::/8", "fd12::1", None, True),
    ("fd00::/8", "fe80::1", None, False),
    ("10.0.0.0/8", "fd00::1", None, False),
    ("169.254/16", "169.254.10.20", None, True),     # macOS's abbreviated form
    ("10/8", "10.9.8.7", None, True),
    ("10.1.2.3/24", "10.1.2.200", None, True),       # host bits are ignored
    # an IP-looking name is still a name, and a name list never matches an address
    ("example.com", "93.184.216.34", None, False),
    # optional ports
    ("example.com:8080", "example.com", 8080, True),
    ("example.com:8080", "example.com", 80, False),
    ("example.com:8080", "example.com", None, False),
    ("example.com:8080", "www.example.com", 8080, True),
    ("10.1.2.3:443", "10.1.2.3", 443, True),
    ("10.1.2.3:443", "10.1.2.3", 80, False),
    ("[::1]:80", "::1", 80, True),
    ("[::1]:80", "::1", 443, False),
    ("10.0.0.0/8:80", "10.3.3.3", 80, True),
    ("10.0.0.0/8:80", "10.3.3.3", 81, False),
    ("example.com", "example.com", 12345, True),     # no port in the item: every port
    # <local>: simple names (no dot), never addresses
    ("<local>", "intranet", None, True),
    ("<local>", "intranet.corp", None, False),
    ("<local>", "10.1.2.3", None, False),
    # empty lists match nothing
    ("", "example.com", None, False),
    ("  , ", "example.com", None, False),
    # underscores occur in real names
    ("my_host.corp", "db.my_host.corp", None, True),
]


@pytest.mark.parametrize("spec,host,port,expected", TABLE,
                         ids=[f"{s!r}~{h}:{p}" for s, h, p, _ in TABLE])
def test_matching_table(spec, host, port, expected):
    assert NoProxy(spec).matches(host, port) is expected


@pytest.mark.parametrize("bad", ["exa mple.com:x", "a..b", "foo:99999", "foo:0", "[::1", "[zz]", "a.*.b",
                                 "http://example.com", "[::1]x", "-bad-.com"])
def test_unreadable_items_are_errors_naming_the_item(bad):
    with pytest.raises(ConfigError) as e:
        NoProxy(bad)
    assert "exclude item" in str(e.value)


def test_lenient_parse_skips_and_lists_bad_items():
    rules = NoProxy("good.test, a..b ,10.0.0.0/8", strict=False)
    assert rules.invalid == ["a..b"]
    assert rules.items == ["good.test", "10.0.0.0/8"]
    assert rules.matches("x.good.test") and rules.matches("10.1.1.1")


def test_text_is_comma_joined_and_equality_follows_items():
    rules = NoProxy(" a.test  b.test,10.0.0.0/8 ")
    assert rules.text == "a.test,b.test,10.0.0.0/8"
    assert rules == NoProxy("a.test,b.test 10.0.0.0/8")
    assert rules != NoProxy("a.test")
    assert not NoProxy("") and rules


def test_list_input_is_the_same_as_text():
    assert NoProxy(["*.local", "169.254/16"]).matches("169.254.1.1")


def test_docstring_examples_hold():
    failures, _ = doctest.testmod(noproxy)
    assert failures == 0


def test_portable_form_for_guests():
    rules = NoProxy("*.local .corp.example example.org:8080 169.254/16 10.1.2.3 10.0.0.0/8:80 [::1]:80 fd00::/8 <local>")
    assert rules.portable() == ["local", "corp.example", "example.org:8080", "169.254.0.0/16", "10.1.2.3",
                                "10.0.0.0/8:80", "[::1]:80", "fd00::/8"]
    assert NoProxy("*").portable() == ["*"]
    # the portable form means the same to this parser
    again = NoProxy(",".join(rules.portable()))
    for host, port in (("x.local", None), ("corp.example", None), ("169.254.9.9", None), ("::1", 80)):
        assert again.matches(host, port) == rules.matches(host, port) is True
