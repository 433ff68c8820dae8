"""``fastnet proxy-env`` as a user runs it: each source of settings, each format, the Docker
client config round trip, and --watch following a change."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from tests.services.test_proxyconf import SCUTIL_MANUAL
from tests.test_cli import fastnet_cmd

BASE_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def proxy_env(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([fastnet_cmd(), "proxy-env", *args], capture_output=True, text=True, timeout=60,
                          env={**BASE_ENV, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def parse_env(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_from_the_environment_both_cases_without_credentials():
    out = proxy_env("--ignore-system-proxy", env={"http_proxy": "http://alice:pw@proxy.corp:3128",
                                                  "HTTPS_PROXY": "proxy.corp:3129", "no_proxy": "corp.example"}).stdout
    env = parse_env(out)
    assert list(env) == ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://proxy.corp:3128"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.corp:3129"
    items = env["NO_PROXY"].split(",")
    assert items[0] == "corp.example"
    for name in ("host.docker.internal", "gateway.docker.internal", "docker.for.mac.localhost", "localhost",
                 "192.168.65.0/24"):
        assert name in items
    assert env["no_proxy"] == env["NO_PROXY"]
    assert "alice" not in out and "pw" not in out


def test_credentials_only_when_asked():
    out = proxy_env("--ignore-system-proxy", "--with-credentials",
                    env={"http_proxy": "http://alice:p%40w@proxy.corp:3128"}).stdout
    assert parse_env(out)["http_proxy"] == "http://alice:p%40w@proxy.corp:3128"


def test_from_a_file_as_json_with_the_subnet_given(tmp_path):
    conf = tmp_path / "http_proxy.json"
    conf.write_text(json.dumps({"http": "127.0.0.1:3128", "https": "10.1.1.1:8080", "exclude": "*.local"}))
    out = proxy_env("--proxy-file", str(conf), "--ignore-system-proxy", "--format", "json", "--subnet", "10.0.2.0/24",
                    env={"http_proxy": "http://env-loses:1"}).stdout
    env = json.loads(out)
    # A proxy on the host's loopback is reached from a guest through the host alias.
    assert env["HTTP_PROXY"] == "http://host.docker.internal:3128"
    assert env["https_proxy"] == "http://10.1.1.1:8080"
    assert env["no_proxy"].split(",")[0] == "local" and "10.0.2.0/24" in env["no_proxy"]


def test_from_macos_system_settings(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "scutil.out").write_text(SCUTIL_MANUAL)
    scutil = bin_dir / "scutil"
    scutil.write_text(f"#!/bin/sh\n[ \"$1\" = --proxy ] && exec cat '{tmp_path / 'scutil.out'}'\nexit 1\n")
    scutil.chmod(0o755)
    out = proxy_env(env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout
    env = parse_env(out)
    assert env["http_proxy"] == "http://proxy.corp.example.com:8080"
    assert env["https_proxy"] == "http://secure-proxy.corp.example.com:8443"
    # macOS's own spellings become the ones every client reads alike; <local> has none.
    assert env["no_proxy"].startswith("local,169.254.0.0/16,corp.example.com,10.0.0.0/8,host.docker.internal")
    # and --ignore-system-proxy really ignores it
    assert proxy_env("--ignore-system-proxy", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout == ""


def test_from_flags_and_via_the_gateway():
    out = proxy_env("--ignore-system-proxy", "--http-proxy", "http://u:p@proxy:1", "--https-proxy", "proxy:2",
                    "--via", "gateway").stdout
    env = parse_env(out)
    assert env["HTTP_PROXY"] == env["https_proxy"] == "http://gateway.docker.internal:3128"


def test_nothing_configured_prints_nothing():
    assert proxy_env("--ignore-system-proxy").stdout == ""


def test_invalid_file_is_one_line_and_status_1(tmp_path):
    conf = tmp_path / "bad.json"
    conf.write_text('{"http": "socks5://x:1"}')
    proc = proxy_env("--proxy-file", str(conf), "--ignore-system-proxy", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "not an HTTP proxy" in proc.stderr


DOCKER_CONFIG = {
    "auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}},
    "credsStore": "desktop",
    "proxies": {"tcp://docker-daemon:2376": {"httpProxy": "http://keep.me:1"}},
    "experimental": "enabled",
}


def test_docker_config_round_trip_keeps_unrelated_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(DOCKER_CONFIG, indent=2))
    path.chmod(0o640)
    env = {"http_proxy": "http://proxy.corp:3128", "https_proxy": "http://proxy.corp:3128"}
    out = proxy_env("--ignore-system-proxy", "--write-docker-config", str(path), "--format", "docker", env=env).stdout
    assert out.strip() == f"updated {path}"
    data = json.loads(path.read_text())
    for key in ("auths", "credsStore", "experimental"):
        assert data[key] == DOCKER_CONFIG[key]
    assert data["proxies"]["tcp://docker-daemon:2376"] == {"httpProxy": "http://keep.me:1"}
    default = data["proxies"]["default"]
    assert default["httpProxy"] == default["httpsProxy"] == "http://proxy.corp:3128"
    assert "host.docker.internal" in default["noProxy"] and "192.168.65.0/24" in default["noProxy"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]     # no temporary left behind
    # The same again changes nothing; env output can go along with the write.
    out = proxy_env("--ignore-system-proxy", "--write-docker-config", str(path), env=env).stdout
    assert parse_env(out)["http_proxy"] == "http://proxy.corp:3128"
    mtime = path.stat().st_mtime_ns
    assert proxy_env("--ignore-system-proxy", "--write-docker-config", str(path), "--format", "docker",
                     env=env).stdout.strip() == f"unchanged {path}"
    assert path.stat().st_mtime_ns == mtime
    # No proxy any more: the default entry goes, everything else stays.
    proxy_env("--ignore-system-proxy", "--write-docker-config", str(path), "--format", "docker")
    assert json.loads(path.read_text()) == DOCKER_CONFIG


def test_docker_format_writes_the_default_config_location(tmp_path):
    proxy_env("--ignore-system-proxy", "--format", "docker",
              env={"DOCKER_CONFIG": str(tmp_path / "dockercfg"), "http_proxy": "http://p:1"})
    data = json.loads((tmp_path / "dockercfg" / "config.json").read_text())
    assert data == {"proxies": {"default": {"httpProxy": "http://p:1", "noProxy": data["proxies"]["default"]["noProxy"]}}}
    assert stat.S_IMODE((tmp_path / "dockercfg" / "config.json").stat().st_mode) == 0o600


def test_a_docker_config_that_is_not_json_is_left_alone(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{ not json")
    proc = proxy_env("--ignore-system-proxy", "--write-docker-config", str(path), env={"http_proxy": "http://p:1"},
                     check=False)
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr
    assert path.read_text() == "{ not json"


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_watch_keeps_the_docker_config_in_step(tmp_path):
    conf = tmp_path / "http_proxy.json"
    conf.write_text(json.dumps({"http": "proxy-one:3128"}))
    docker = tmp_path / "config.json"
    docker.write_text(json.dumps({"auths": {}}))
    proc = subprocess.Popen([fastnet_cmd(), "proxy-env", "--watch", "--format", "json", "--ignore-system-proxy",
                             "--proxy-file", str(conf), "--write-docker-config", str(docker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASE_ENV)
    try:
        def default_proxy():
            try:
                return json.loads(docker.read_text()).get("proxies", {}).get("default", {}).get("httpProxy")
            except ValueError:
                return None
        assert wait_for(lambda: default_proxy() == "http://proxy-one:3128")
        tmp = tmp_path / "new.json"
        tmp.write_text(json.dumps({"http": "proxy-two:3128"}))
        os.replace(tmp, conf)
        assert wait_for(lambda: default_proxy() == "http://proxy-two:3128")
        # An invalid file is reported and changes nothing.
        conf.write_text("{")
        time.sleep(0.6)
        assert default_proxy() == "http://proxy-two:3128"
        assert json.loads(docker.read_text())["auths"] == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["HTTP_PROXY"] for line in lines] == ["http://proxy-one:3128", "http://proxy-two:3128"]
    assert len([e for e in err.splitlines() if "keeping the last good configuration" in e]) == 1
