"""Detecting and merging the proxy settings: URLs, environment precedence, vpnkit's JSON file
(watched), macOS ``scutil --proxy`` output, and what guests are given."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import pytest

from fastnet.errors import ConfigError
from fastnet.services.config import NetworkConfig
from fastnet.services.noproxy import NoProxy
from fastnet.services.proxyconf import (
    ProxyConfig, ProxyConfigSource, ProxyServer, docker_proxies, guest_environment, layer_from_env,
    layer_from_json, layer_from_scutil, merge, parse_proxy_url, parse_scutil,
)

SECRET = "s3cr%40t"        # "s3cr@t" percent-encoded in URLs


# -- proxy URLs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,host,port,user,password", [
    ("http://proxy.corp:3128", "proxy.corp", 3128, None, None),
    ("proxy.corp:3128", "proxy.corp", 3128, None, None),
    ("proxy.corp", "proxy.corp", 80, None, None),
    ("http://proxy.corp/", "proxy.corp", 80, None, None),
    ("HTTP://Proxy.Corp:8080", "proxy.corp", 8080, None, None),
    (f"http://alice:{SECRET}@proxy.corp:3128", "proxy.corp", 3128, "alice", "s3cr@t"),
    ("http://bob@10.0.0.1:3128", "10.0.0.1", 3128, "bob", None),
    ("http://[fd00::1]:3128", "fd00::1", 3128, None, None),
])
def test_proxy_urls(text, host, port, user, password):
    s = parse_proxy_url(text)
    assert (s.host, s.port, s.username, s.password) == (host, port, user, password)


@pytest.mark.parametrize("text,why", [
    ("socks5://proxy:1080", "not an HTTP proxy"),
    ("https://proxy:443", "not supported"),
    ("http://proxy:3128/path", "no path"),
    ("http://:3128", "no host"),
    ("http://proxy:99999", "out of range"),
])
def test_bad_proxy_urls_are_one_line_errors(text, why):
    with pytest.raises(ConfigError) as e:
        parse_proxy_url(text, "http")
    assert why in str(e.value) and "\n" not in str(e.value)


def test_bad_url_error_hides_credentials():
    with pytest.raises(ConfigError) as e:
        parse_proxy_url(f"socks5://alice:{SECRET}@proxy:1080")
    assert "alice" not in str(e.value) and "s3cr" not in str(e.value)


@pytest.mark.parametrize("password", ["s3/cr3t", "pa?ss", "pa#ss"])
def test_a_password_that_breaks_the_url_is_not_shown_either(password):
    # Unencoded "/", "?" or "#" end the authority early: the URL fails to parse, and neither
    # the masked form nor the parser's message may give the password away.
    with pytest.raises(ConfigError) as e:
        parse_proxy_url(f"http://bob:{password}@proxy:3128")
    assert "bob" not in str(e.value) and password not in str(e.value)
    assert password.split("/")[0].split("?")[0].split("#")[0] not in str(e.value)


def test_credentials_become_basic_auth_and_never_show():
    s = parse_proxy_url(f"http://alice:{SECRET}@proxy.corp:3128")
    assert s.authorization == "Basic YWxpY2U6czNjckB0"          # base64("alice:s3cr@t")
    assert s.display() == "http://***@proxy.corp:3128"
    assert "s3cr" not in repr(s) and "alice" not in repr(s)
    assert s.url() == "http://proxy.corp:3128"
    assert s.url(credentials=True) == f"http://alice:{SECRET}@proxy.corp:3128"
    cfg = ProxyConfig(http=s)
    assert "s3cr" not in cfg.describe() and "s3cr" not in repr(cfg)
    assert "s3cr" not in json.dumps(cfg.to_json())
    assert SECRET in json.dumps(cfg.to_json(credentials=True))


def test_ipv6_proxy_address_has_brackets():
    assert parse_proxy_url("http://[::1]:3128").address == "[::1]:3128"


# -- the environment ----------------------------------------------------------------------------

def test_env_lower_case_wins_over_upper_case():
    layer, warnings = layer_from_env({"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2",
                                      "HTTPS_PROXY": "http://upper:3", "NO_PROXY": "a.test", "no_proxy": "b.test"})
    assert layer["http"].host == "lower"
    assert layer["https"].host == "upper"
    assert layer["exclude"] == NoProxy("b.test")
    assert warnings == []


def test_env_all_proxy_is_the_fallback_for_both():
    layer, _ = layer_from_env({"ALL_PROXY": "http://all:9", "https_proxy": "http://s:1"})
    assert layer["http"].host == "all" and layer["https"].host == "s"
    layer, _ = layer_from_env({"all_proxy": "http://lower:1", "ALL_PROXY": "http://upper:2"})
    assert layer["http"].host == "lower"


def test_env_socks_all_proxy_is_ignored_quietly():
    layer, warnings = layer_from_env({"ALL_PROXY": "socks5h://127.0.0.1:1080"})
    assert layer == {} and warnings == []


def test_env_empty_values_are_unset():
    layer, _ = layer_from_env({"http_proxy": "", "HTTP_PROXY": "http://upper:2", "no_proxy": " "})
    assert layer["http"].host == "upper" and "exclude" not in layer


def test_env_bad_values_are_warnings_not_errors():
    layer, warnings = layer_from_env({"http_proxy": "socks5://x:1", "no_proxy": "ok.test,a..b"})
    assert "http" not in layer
    assert layer["exclude"].items == ["ok.test"]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)


# -- vpnkit's JSON --------------------------------------------------------------------------------

def test_json_layer_reads_vpnkit_format():
    layer = layer_from_json({"http": "proxy:3128", "https": f"http://u:{SECRET}@proxy:3129",
                             "exclude": "*.local 10.0.0.0/8", "transparent_http_ports": [80, 8080],
                             "transparent_https_ports": [443], "allow_enabled": False, "allow": [],
                             "transparent": True})
    cfg = merge(layer)
    assert cfg.http.address == "proxy:3128" and cfg.https.username == "u"
    assert cfg.intercept_http_ports == (80, 8080) and cfg.intercept_https_ports == (443,)
    assert cfg.excluded("printer.local") and cfg.excluded("10.2.2.2") and not cfg.excluded("example.com")


@pytest.mark.parametrize("obj,why", [
    ([], "JSON object"),
    ({"htp": "x:1"}, "unknown key"),
    ({"http": "socks5://x:1"}, "not an HTTP proxy"),
    ({"http": 42}, "expected a proxy URL string"),
    ({"https": ["p:1"]}, "expected a proxy URL string"),
    ({"exclude": "a..b"}, "exclude item"),
    ({"exclude": 5}, "expected a string"),
    ({"transparent_http_ports": [0]}, "not a port"),
    ({"transparent_http_ports": "80"}, "list of ports"),
    ({"transparent_https_ports": [True]}, "not a port"),
    ({"transparent": "yes"}, "true, false"),
    ({"allow_enabled": True}, "allow lists"),
])
def test_json_layer_validation(obj, why):
    with pytest.raises(ConfigError) as e:
        layer_from_json(obj)
    assert why in str(e.value)


def test_empty_json_means_no_proxy_and_transparent_follows_the_upstream():
    cfg = merge(layer_from_json({}))
    assert cfg.http is None and cfg.intercept_http_ports == () and cfg.intercept_https_ports == ()
    cfg = merge(layer_from_json({"http": "p:1"}))
    assert cfg.intercept_http_ports == (80,) and cfg.intercept_https_ports == ()   # no https upstream
    cfg = merge(layer_from_json({"http": "p:1", "https": "p:1", "transparent": False}))
    assert cfg.intercept_http_ports == () and cfg.intercept_https_ports == ()


def test_merge_takes_each_key_from_the_highest_layer_that_sets_it():
    cli = layer_from_json({"https": "cli:1"})
    file = layer_from_json({"http": "file:1", "https": "file:2", "exclude": "f.test"})
    env, _ = layer_from_env({"http_proxy": "http://env:1", "no_proxy": "e.test"})
    cfg = merge(cli, file, env)
    assert cfg.http.host == "file" and cfg.https.host == "cli" and cfg.exclude == NoProxy("f.test")
    # "" in a higher layer means "no proxy", overriding lower layers
    cfg = merge(layer_from_json({"http": ""}), env)
    assert cfg.http is None


def test_to_json_round_trips():
    cfg = merge(layer_from_json({"http": "p:1", "exclude": "a.test", "transparent_http_ports": [81]}))
    assert merge(layer_from_json(cfg.to_json())) == cfg


# -- macOS scutil --proxy -------------------------------------------------------------------------

SCUTIL_NONE = """<dictionary> {
  ExceptionsList : <array> {
    0 : *.local
    1 : 169.254/16
  }
  FTPPassive : 1
  HTTPEnable : 0
  HTTPSEnable : 0
}
"""

SCUTIL_MANUAL = """<dictionary> {
  ExceptionsList : <array> {
    0 : *.local
    1 : 169.254/16
    2 : corp.example.com
    3 : 10.0.0.0/8
  }
  ExcludeSimpleHostnames : 1
  FTPPassive : 1
  HTTPEnable : 1
  HTTPPort : 8080
  HTTPProxy : proxy.corp.example.com
  HTTPSEnable : 1
  HTTPSPort : 8443
  HTTPSProxy : secure-proxy.corp.example.com
  ProxyAutoConfigEnable : 0
  SOCKSEnable : 0
  __SCOPED__ : <dictionary> {
    en0 : <dictionary> {
      ExceptionsList : <array> {
        0 : *.local
        1 : 169.254/16
      }
      FTPPassive : 1
      HTTPEnable : 1
      HTTPPort : 8080
      HTTPProxy : proxy.corp.example.com
    }
  }
}
"""

SCUTIL_PAC = """<dictionary> {
  ExceptionsList : <array> {
    0 : *.local
  }
  FTPPassive : 1
  HTTPEnable : 0
  ProxyAutoConfigEnable : 1
  ProxyAutoConfigURLString : http://wpad.corp.example.com/wpad.dat
}
"""

SCUTIL_HTTPS_ONLY_NO_PORT = """<dictionary> {
  HTTPSEnable : 1
  HTTPSProxy : 192.168.10.1
  HTTPEnable : 1
}
"""


def test_scutil_parser_reads_nested_dictionaries_and_arrays():
    d = parse_scutil(SCUTIL_MANUAL)
    assert d["ExceptionsList"] == ["*.local", "169.254/16", "corp.example.com", "10.0.0.0/8"]
    assert d["HTTPProxy"] == "proxy.corp.example.com" and d["HTTPPort"] == "8080"
    assert d["__SCOPED__"]["en0"]["ExceptionsList"] == ["*.local", "169.254/16"]


def test_scutil_manual_proxy():
    layer, notes = layer_from_scutil(parse_scutil(SCUTIL_MANUAL))
    cfg = merge(layer)
    assert cfg.http.address == "proxy.corp.example.com:8080"
    assert cfg.https.address == "secure-proxy.corp.example.com:8443"
    for host in ("printer.local", "169.254.3.4", "git.corp.example.com", "10.9.9.9", "intranet"):
        assert cfg.excluded(host), host
    assert not cfg.excluded("example.org")
    assert notes == []


def test_scutil_disabled_proxies_set_nothing_but_exceptions():
    layer, notes = layer_from_scutil(parse_scutil(SCUTIL_NONE))
    assert set(layer) == {"exclude"} and notes == []


def test_scutil_pac_is_reported_not_evaluated():
    layer, notes = layer_from_scutil(parse_scutil(SCUTIL_PAC))
    assert "http" not in layer and len(notes) == 1 and "PAC" in notes[0]


def test_scutil_defaults_port_80_and_skips_enabled_without_host():
    layer, _ = layer_from_scutil(parse_scutil(SCUTIL_HTTPS_ONLY_NO_PORT))
    assert layer["https"].address == "192.168.10.1:80" and "http" not in layer


@pytest.mark.parametrize("text", ["", "HTTPEnable : 1", "<dictionary> {\n  A : 1\n", "<dictionary> {\n}\n}\n",
                                  "<dictionary> {\n  junk line\n}\n", "<dictionary> {\n  L : <array> {\n  x : 1\n  }\n}\n"])
def test_scutil_garbage_is_an_error(text):
    with pytest.raises(ConfigError):
        parse_scutil(text)


def fake_scutil(tmp_path, text: str) -> list[str]:
    out = tmp_path / "scutil.out"
    out.write_text(text)
    script = tmp_path / "scutil"
    script.write_text(f"#!/bin/sh\ncat '{out}'\n")
    script.chmod(0o755)
    return [str(script), "--proxy"]


def test_source_reads_system_settings_below_the_environment(tmp_path):
    cmd = fake_scutil(tmp_path, SCUTIL_MANUAL)
    src = ProxyConfigSource(environ={"https_proxy": "http://env:1"}, system=cmd)
    assert src.current.http.host == "proxy.corp.example.com"
    assert src.current.https.host == "env"


def test_source_follows_system_changes(tmp_path):
    cmd = fake_scutil(tmp_path, SCUTIL_NONE)
    src = ProxyConfigSource(environ={}, system=cmd)
    assert src.current.http is None
    (tmp_path / "scutil.out").write_text(SCUTIL_MANUAL)
    assert src.refresh_system() is True
    assert src.current.http.port == 8080
    assert src.refresh_system() is False


# -- the watched file -------------------------------------------------------------------------------

def write(path, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    os.replace(tmp, path)


def test_file_beats_the_environment_and_a_missing_file_sets_nothing(tmp_path):
    path = tmp_path / "http_proxy.json"
    src = ProxyConfigSource(file=str(path), environ={"http_proxy": "http://env:1"}, system=False)
    assert src.current.http.host == "env"
    write(path, {"http": "file:2"})
    assert src.check_file() is True and src.current.http.host == "file"
    path.unlink()
    assert src.check_file() is True and src.current.http.host == "env"


def test_invalid_file_at_start_is_an_error(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError) as e:
        ProxyConfigSource(file=str(path), environ={}, system=False)
    assert str(path) in str(e.value)


def test_invalid_file_keeps_the_last_good_config_and_is_reported_once(tmp_path, caplog):
    path = tmp_path / "p.json"
    write(path, {"http": f"http://u:{SECRET}@good:1"})
    src = ProxyConfigSource(file=str(path), environ={}, system=False)
    good = src.current
    caplog.set_level(logging.INFO, logger="fastnet.proxy")
    write(path, {"http": "socks5://bad:1"})
    for _ in range(3):
        assert src.check_file() is False
    assert src.current is good
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "\n" not in line and str(path) in line and "keeping the last good" in line
    assert src.file_error == line
    write(path, "[1, 2")
    assert src.check_file() is False and src.current is good
    write(path, {"http": "fixed:3"})
    assert src.check_file() is True and src.current.http.host == "fixed" and src.file_error is None
    assert "s3cr" not in caplog.text and "s3cr@t" not in caplog.text


def test_file_change_applies_within_a_second_on_the_loop(tmp_path):
    path = tmp_path / "p.json"
    write(path, {"http": "one:1"})
    seen = []

    async def main():
        src = ProxyConfigSource(file=str(path), environ={}, system=False)
        src.subscribe(lambda cfg: seen.append((time.monotonic(), cfg)))
        src.start(asyncio.get_running_loop())
        try:
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            write(path, {"http": "two:2"})
            deadline = t0 + 3
            while src.current.http.host != "two" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return time.monotonic() - t0, src.current
        finally:
            src.close()

    elapsed, cfg = asyncio.run(main())
    assert cfg.http.host == "two"
    assert elapsed < 1.0
    assert len(seen) == 1


def test_api_layer_sits_above_the_file(tmp_path):
    path = tmp_path / "p.json"
    write(path, {"http": "file:1", "exclude": "f.test"})
    src = ProxyConfigSource(file=str(path), environ={}, system=False, overrides={"https": "cli:9"})
    src.set_api({"http": "api:2"})
    assert src.current.http.host == "api" and src.current.exclude == NoProxy("f.test")
    assert src.api_json()["http"] == "http://api:2" and src.api_json()["https"] == "http://cli:9"
    with pytest.raises(ConfigError):
        src.set_api({"http": "socks5://x:1"})
    assert src.current.http.host == "api"


def test_cli_overrides_are_validated():
    with pytest.raises(ConfigError):
        ProxyConfigSource(environ={}, system=False, overrides={"exclude": "a..b"})


# -- what guests get --------------------------------------------------------------------------------

def test_guest_environment_both_cases_and_network_names():
    cfg = merge(layer_from_json({"http": f"http://u:{SECRET}@proxy.corp:3128", "https": "proxy.corp:3129",
                                 "exclude": "corp.example"}))
    env = guest_environment(cfg, NetworkConfig())
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://proxy.corp:3128"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.corp:3129"
    items = env["NO_PROXY"].split(",")
    assert env["no_proxy"] == env["NO_PROXY"]
    assert items[0] == "corp.example"
    for name in ("host.docker.internal", "gateway.docker.internal", "localhost", "192.168.65.0/24"):
        assert name in items
    assert "s3cr" not in json.dumps(env)
    env = guest_environment(cfg, NetworkConfig(), credentials=True)
    assert env["HTTP_PROXY"] == f"http://u:{SECRET}@proxy.corp:3128"


def test_guest_environment_follows_the_configured_names():
    # The names the network's DNS answers (here fastnet vpnkit's extra ones) are the ones
    # guests must not send to a proxy, and the ones the variables use.
    from fastnet.services.config import DnsConfig
    net = NetworkConfig(dns_service=DnsConfig(host_names=["host.internal"], gateway_names=["gateway.internal"]))
    cfg = merge(layer_from_json({"http": "127.0.0.1:3128"}))
    env = guest_environment(cfg, net)
    assert env["HTTP_PROXY"] == "http://host.internal:3128"
    items = env["NO_PROXY"].split(",")
    assert "host.internal" in items and "gateway.internal" in items and "host.docker.internal" not in items
    assert guest_environment(cfg, net, via="gateway")["HTTP_PROXY"] == "http://gateway.internal:3128"


def test_guest_environment_reaches_a_loopback_proxy_through_the_host_alias():
    cfg = merge(layer_from_json({"http": "127.0.0.1:3128"}))
    env = guest_environment(cfg, NetworkConfig())
    assert env["HTTP_PROXY"] == "http://host.docker.internal:3128" and "HTTPS_PROXY" not in env
    env = guest_environment(cfg, NetworkConfig(host_loopback=False))
    assert env["HTTP_PROXY"] == "http://127.0.0.1:3128"


def test_guest_environment_via_gateway_and_when_nothing_is_configured():
    cfg = merge(layer_from_json({"http": f"http://u:{SECRET}@p:1", "https": "p:1"}))
    env = guest_environment(cfg, NetworkConfig(), via="gateway")
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://gateway.docker.internal:3128"
    assert guest_environment(ProxyConfig(), NetworkConfig()) == {}


def test_docker_proxies_names():
    env = {"HTTP_PROXY": "a", "http_proxy": "a", "HTTPS_PROXY": "b", "NO_PROXY": "c"}
    assert docker_proxies(env) == {"httpProxy": "a", "httpsProxy": "b", "noProxy": "c"}


def test_proxy_server_equality_includes_credentials():
    assert ProxyServer("p", 1, "u", "a") != ProxyServer("p", 1, "u", "b")
