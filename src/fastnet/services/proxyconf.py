"""The host's HTTP/HTTPS proxy settings, detected from every source and merged into one
validated configuration that the proxy (fastnet.services.proxy) and ``fastnet proxy-env`` read.

Sources, highest precedence first; for each setting the first source that sets it wins:

1. command-line flags (``--http-proxy``, ``--https-proxy``, ``--no-proxy``);
2. the control API (``set_api``: the JSON below, as vpnkit's ``POST /http_proxy.json``);
3. a JSON file in vpnkit's format, watched: a change applies to new connections within a
   second (existing connections keep the configuration they started with); an invalid file is
   reported in one line and the last good configuration stays in force; a missing file sets
   nothing::

       {"http": "http://user:pass@proxy.corp:3128",    # or "proxy.corp:3128"
        "https": "proxy.corp:3128",
        "exclude": "localhost,.corp.example 10.0.0.0/8",   # fastnet.services.noproxy syntax
        "transparent_http_ports": [80], "transparent_https_ports": [443],
        "transparent": true}                           # fastnet's own key; default: on when
                                                       # an upstream proxy is configured
   A key set to ``""`` or ``null`` overrides lower sources with "no proxy". vpnkit's
   ``allow_enabled``/``allow``/``allow_error_msg`` are accepted only when the allow list is off.
4. the environment: ``http_proxy``/``HTTP_PROXY``, ``https_proxy``/``HTTPS_PROXY``, then
   ``all_proxy``/``ALL_PROXY`` for both, and ``no_proxy``/``NO_PROXY``. The lower-case name wins
   when both are set (curl, wget and Python do this; Go reads the upper-case one first). Empty
   values count as unset;
5. the macOS system settings, read with ``scutil --proxy`` when that command exists (polled;
   ExceptionsList and "exclude simple hostnames" become exclude items). Automatic
   configuration (PAC) is not evaluated: it is reported once and ignored.

Proxy URLs are ``http://[user:pass@]host[:port]`` (the scheme may be left out; the port
defaults to 80, as in Go and Python; curl would use 1080). Credentials become a
``Proxy-Authorization: Basic`` header; they never appear in logs (``describe()`` and ``repr``
show ``***``), nor in what is propagated to guests unless asked for.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import quote, unquote, urlsplit

from fastnet.errors import ConfigError
from fastnet.services.config import DnsConfig
from fastnet.services.noproxy import NoProxy

log = logging.getLogger("fastnet.proxy")

EXPLICIT_PROXY_PORT = 3128


def own_names(network=None) -> tuple[list[str], list[str]]:
    """The virtual network's own names, as its DNS service answers them (host alias, gateway;
    reference/vpnkit.md §4): guests must never send these to a proxy."""
    dns_cfg = network.dns_service if network is not None else DnsConfig()
    return [n.lower() for n in dns_cfg.host_names], [n.lower() for n in dns_cfg.gateway_names]

KEYS = ("http", "https", "exclude", "transparent_http_ports", "transparent_https_ports", "transparent")
_VPNKIT_ALLOW_KEYS = ("allow_enabled", "allow", "allow_error_msg")


# -- one upstream proxy ------------------------------------------------------------------------

@dataclass(frozen=True)
class ProxyServer:
    """An upstream HTTP proxy. Its password never shows in repr() or display()."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """host:port, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The Proxy-Authorization value for the credentials, or None."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def url(self, credentials: bool = False) -> str:
        auth = ""
        if self.username is not None:
            if credentials:
                auth = quote(self.username, safe="")
                if self.password is not None:
                    auth += ":" + quote(self.password, safe="")
                auth += "@"
        return f"http://{auth}{self.address}"

    def display(self) -> str:
        """For logs and messages: credentials shown as ***."""
        return f"http://{'***@' if self.username is not None else ''}{self.address}"

    def with_host(self, host: str) -> "ProxyServer":
        return ProxyServer(host, self.port, self.username, self.password)

    def __repr__(self) -> str:
        return f"ProxyServer({self.display()!r})"


def parse_proxy_url(value: str, what: str = "proxy") -> ProxyServer:
    """``http://user:pass@host:port``, ``host:port`` or ``host`` → ProxyServer. The message of
    a ConfigError never includes the value's credentials."""
    text = str(value).strip()
    shown = _redact(text)
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        # Not urlsplit's message as such: it can quote parts of the URL, a password among them.
        why = "port out of range 0-65535" if "out of range" in str(e) else "not a valid URL (bad host or port)"
        raise ConfigError(f"{what} {shown!r}: {why}") from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        if scheme == "https":
            raise ConfigError(f"{what} {shown!r}: TLS to the proxy (https://) is not supported; use http://")
        raise ConfigError(f"{what} {shown!r}: not an HTTP proxy (scheme {scheme}://)")
    if not parts.hostname:
        raise ConfigError(f"{what} {shown!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{what} {shown!r}: a proxy URL has no path")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyServer(parts.hostname, port or 80, user, password)


def _redact(text: str) -> str:
    """The URL with any userinfo replaced by ***."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    at = rest.rfind("@")  # a password may hold "/", "?" or "#"; a proxy URL has no path to hold "@"
    if at >= 0:
        rest = "***@" + rest[at + 1:]
    return f"{scheme}{sep}{rest}"


def is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the merged configuration ------------------------------------------------------------------

def _ports(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of ports")
    out = []
    for p in value:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
            raise ConfigError(f"{key}: {p!r} is not a port")
        if p not in out:
            out.append(p)
    return tuple(out)


@dataclass(frozen=True)
class ProxyConfig:
    """One validated, merged configuration. Immutable: a change makes a new one, so a
    connection holding this object keeps its settings to the end."""

    http: ProxyServer | None = None
    https: ProxyServer | None = None
    exclude: NoProxy = field(default_factory=NoProxy)
    transparent_http_ports: tuple[int, ...] = (80,)
    transparent_https_ports: tuple[int, ...] = (443,)
    transparent: bool | None = None      # None: on when the upstream for that scheme is set

    @property
    def intercept_http_ports(self) -> tuple[int, ...]:
        return self.transparent_http_ports if self.http is not None and self.transparent is not False else ()

    @property
    def intercept_https_ports(self) -> tuple[int, ...]:
        return self.transparent_https_ports if self.https is not None and self.transparent is not False else ()

    def excluded(self, host, port: int | None = None) -> bool:
        return self.exclude.matches(host, port)

    def to_json(self, credentials: bool = False) -> dict:
        """vpnkit's JSON format (plus ``transparent``); credentials only when asked."""
        out: dict[str, Any] = {}
        if self.http is not None:
            out["http"] = self.http.url(credentials)
        if self.https is not None:
            out["https"] = self.https.url(credentials)
        if self.exclude:
            out["exclude"] = self.exclude.text
        out["transparent_http_ports"] = list(self.transparent_http_ports)
        out["transparent_https_ports"] = list(self.transparent_https_ports)
        if self.transparent is not None:
            out["transparent"] = self.transparent
        return out

    def describe(self) -> str:
        """One line for logs, credentials hidden."""
        parts = [f"http={self.http.display() if self.http else 'direct'}",
                 f"https={self.https.display() if self.https else 'direct'}"]
        if self.exclude:
            parts.append(f"exclude={self.exclude.text}")
        transparent = [str(p) for p in self.intercept_http_ports + self.intercept_https_ports]
        parts.append(f"transparent={','.join(transparent) if transparent else 'off'}")
        return " ".join(parts)


Layer = dict  # a subset of KEYS with validated values


def merge(*layers: Layer) -> ProxyConfig:
    """Highest-precedence layer first; each key comes from the first layer that sets it."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key in KEYS:
            if key in layer and key not in values:
                values[key] = layer[key]
    if values.get("exclude") is None:
        values.pop("exclude", None)
    return ProxyConfig(**values)


def layer_from_json(obj: Any) -> Layer:
    """vpnkit's JSON (see the module docstring) → a validated layer. Raises ConfigError."""
    if not isinstance(obj, dict):
        raise ConfigError("expected a JSON object")
    layer: Layer = {}
    for key, value in obj.items():
        if key in ("http", "https"):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{key}: expected a proxy URL string or null")
            layer[key] = parse_proxy_url(value, key) if value not in (None, "") else None
        elif key == "exclude":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = ",".join(value)
            if value is not None and not isinstance(value, str):
                raise ConfigError("exclude: expected a string")
            layer[key] = NoProxy(value or "")
        elif key in ("transparent_http_ports", "transparent_https_ports"):
            layer[key] = _ports(value, key)
        elif key == "transparent":
            if value is not None and not isinstance(value, bool):
                raise ConfigError("transparent: expected true, false or null")
            layer[key] = value
        elif key in _VPNKIT_ALLOW_KEYS:
            if key == "allow_enabled" and value:
                raise ConfigError("allow_enabled: allow lists are not supported")
        else:
            raise ConfigError(f"unknown key {key!r}")
    return layer


def parse_json_text(text: str | bytes) -> Layer:
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"not valid JSON: {e}") from None
    return layer_from_json(obj)


def layer_from_env(environ: Mapping[str, str]) -> tuple[Layer, list[str]]:
    """The proxy variables of an environment → (layer, warnings). A bad value is a warning and
    is ignored: the environment of a running process cannot be fixed later."""
    layer: Layer = {}
    warnings: list[str] = []

    def first(*names: str) -> tuple[str, str] | None:
        for name in names:
            v = environ.get(name, "").strip()
            if v:
                return name, v
        return None

    for key, names in (("http", ("http_proxy", "HTTP_PROXY")), ("https", ("https_proxy", "HTTPS_PROXY"))):
        found = first(*names)
        if found is None:
            found = first("all_proxy", "ALL_PROXY")
            if found is not None and "://" in found[1] and not found[1].lower().startswith("http://"):
                # ALL_PROXY often names a SOCKS proxy: not usable for HTTP, and not an error.
                found = None
        if found is None:
            continue
        try:
            layer[key] = parse_proxy_url(found[1], found[0])
        except ConfigError as e:
            warnings.append(f"environment: {e}; ignored")
    found = first("no_proxy", "NO_PROXY")
    if found is not None:
        rules = NoProxy(found[1], strict=False)
        if rules.invalid:
            warnings.append(f"environment: {found[0]}: ignoring unreadable items {rules.invalid}")
        layer["exclude"] = rules
    return layer, warnings


# -- macOS: scutil --proxy -----------------------------------------------------------------------

def parse_scutil(text: str) -> dict:
    """The nested ``<dictionary> { key : value ... }`` text printed by ``scutil --proxy`` →
    dicts, lists (for ``<array>``, in index order) and strings."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    pos = 0

    def block(kind: str):
        nonlocal pos
        items: dict[str, Any] = {}
        while pos < len(lines):
            line = lines[pos]
            pos += 1
            if line == "}":
                if kind == "dict":
                    return items
                try:
                    return [items[k] for k in sorted(items, key=int)]
                except ValueError:
                    raise ConfigError("scutil output: an <array> with a non-numeric index") from None
            key, sep, value = line.partition(" : ")
            if not sep:
                raise ConfigError(f"scutil output: cannot read line {line!r}")
            value = value.strip()
            if value == "<dictionary> {":
                items[key.strip()] = block("dict")
            elif value == "<array> {":
                items[key.strip()] = block("array")
            else:
                items[key.strip()] = value
        raise ConfigError("scutil output: unterminated <dictionary>")

    if not lines or lines[0] != "<dictionary> {":
        raise ConfigError("scutil output: does not start with <dictionary> {")
    pos = 1
    result = block("dict")
    if pos != len(lines):
        raise ConfigError("scutil output: text after the dictionary")
    return result


def layer_from_scutil(settings: dict) -> tuple[Layer, list[str]]:
    """macOS proxy settings → (layer, notes). Only enabled proxies are used; the exception
    list keeps macOS's syntax, which the exclude parser reads (``*.local``, ``169.254/16``)."""
    layer: Layer = {}
    notes: list[str] = []
    for key, prefix in (("http", "HTTP"), ("https", "HTTPS")):
        if str(settings.get(f"{prefix}Enable", "0")) != "1":
            continue
        host = settings.get(f"{prefix}Proxy")
        port = settings.get(f"{prefix}Port", "80")
        if not host:
            continue
        try:
            server = parse_proxy_url(f"{host}:{port}", f"system {key} proxy")
        except ConfigError as e:
            notes.append(f"{e}; ignored")
            continue
        layer[key] = server
    items = settings.get("ExceptionsList") or []
    if isinstance(items, str):
        items = [items]
    if str(settings.get("ExcludeSimpleHostnames", "0")) == "1":
        items = list(items) + ["<local>"]
    if items:
        rules = NoProxy(list(items), strict=False)
        if rules.invalid:
            notes.append(f"system exceptions: ignoring unreadable items {rules.invalid}")
        layer["exclude"] = rules
    if str(settings.get("ProxyAutoConfigEnable", "0")) == "1":
        notes.append("system proxy auto-configuration (PAC) is not evaluated; set the proxy explicitly")
    return layer, notes


def scutil_command() -> list[str] | None:
    path = shutil.which("scutil")
    return [path, "--proxy"] if path else None


def read_scutil(command: list[str], timeout: float = 5.0) -> tuple[Layer, list[str]]:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True).stdout
        return layer_from_scutil(parse_scutil(out))
    except (OSError, subprocess.SubprocessError, ConfigError) as e:
        return {}, [f"system proxy settings unreadable ({' '.join(command)}): {e}"]


# -- what guests are given -----------------------------------------------------------------------

def guest_environment(cfg: ProxyConfig, network=None, *, via: str = "upstream",
                      credentials: bool = False) -> dict[str, str]:
    """The proxy variables a guest should get, both cases of each name; {} when no proxy is
    configured. ``via="upstream"`` gives the host's proxies (a proxy on the host's loopback is
    reached through the host alias name); ``via="gateway"`` points guests at fastnet's explicit
    proxy on gateway:3128, which adds credentials and applies the exclude list itself.
    ``network`` (a NetworkConfig) supplies the subnet for no_proxy, whose items are written in
    the form every client reads alike (NoProxy.portable)."""
    if cfg.http is None and cfg.https is None:
        return {}
    host_alias_ok = network is None or (network.host_alias is not None and network.host_loopback)
    host_names, gateway_names = own_names(network)

    def value(server: ProxyServer | None) -> str | None:
        if server is None:
            return None
        if via == "gateway":
            return f"http://{gateway_names[0]}:{EXPLICIT_PROXY_PORT}"
        if is_loopback_host(server.host) and host_alias_ok:
            server = server.with_host(host_names[0])
        return server.url(credentials)

    no_proxy: list[str] = []
    # The network's own names lead the guests' no_proxy list (after the host's own excludes).
    for item in cfg.exclude.portable() + host_names + gateway_names + ["localhost", "127.0.0.0/8"]:
        if item not in no_proxy:
            no_proxy.append(item)
    if network is not None and str(network.subnet) not in no_proxy:
        no_proxy.append(str(network.subnet))
    env: dict[str, str] = {}
    for name, v in (("HTTP_PROXY", value(cfg.http)), ("HTTPS_PROXY", value(cfg.https)),
                    ("NO_PROXY", ",".join(no_proxy))):
        if v is not None:
            env[name] = v
            env[name.lower()] = v
    return env


def docker_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """The ``proxies.default`` object of a Docker client config for these variables."""
    out = {}
    for key, name in (("httpProxy", "HTTP_PROXY"), ("httpsProxy", "HTTPS_PROXY"), ("noProxy", "NO_PROXY")):
        if env.get(name):
            out[key] = env[name]
    return out


# -- the live source -----------------------------------------------------------------------------

class ProxyConfigSource:
    """Holds the current merged configuration and keeps it up to date (call ``start(loop)``).

    ``current`` is swapped atomically; readers take it once per connection.
    """

    def __init__(self, *, file: str | None = None, environ: Mapping[str, str] | None = None,
                 system: bool | list[str] | None = None, overrides: Mapping[str, Any] | None = None,
                 poll_interval: float = 0.25, system_interval: float = 2.0):
        """``environ``: None for os.environ, {} for none. ``system``: None to use scutil when
        it exists, False never, or a command. ``overrides``: vpnkit-style JSON keys from the
        command line (validated here; an error raises ConfigError). An invalid file at start
        raises ConfigError too: there is no last good configuration to keep yet."""
        self.file = file
        self.poll_interval = poll_interval
        self.system_interval = system_interval
        self.file_error: str | None = None
        self._listeners: list[Callable[[ProxyConfig], None]] = []
        self._task: asyncio.Task | None = None
        self._file_bytes: bytes | None = None
        self._noted: set[str] = set()
        self._cli = layer_from_json(dict(overrides or {}))
        self._api: Layer = {}
        self._api_json: dict | None = None
        self._file: Layer = {}
        env_layer, warnings = layer_from_env(os.environ if environ is None else environ)
        self._env = env_layer
        for w in warnings:
            self._note(w)
        if system is None:
            self._scutil = scutil_command()
        elif system is False:
            self._scutil = None
        else:
            self._scutil = list(system)  # type: ignore[arg-type]
        self._system: Layer = {}
        if self._scutil:
            self._system, notes = read_scutil(self._scutil)
            for n in notes:
                self._note(n)
        if file is not None:
            self._load_file(strict=True)
        self._current = self._merge()
        log.info("proxy configuration: %s", self._current.describe())

    # -- reading ----------------------------------------------------------------------------

    @property
    def current(self) -> ProxyConfig:
        return self._current

    def subscribe(self, callback: Callable[[ProxyConfig], None]) -> None:
        """callback(new_config) after each change."""
        self._listeners.append(callback)

    def api_json(self, credentials: bool = False) -> dict:
        """What the control API's GET answers: the configuration in force."""
        return self._current.to_json(credentials)

    def api_layer_json(self) -> dict | None:
        """What the control API last set (credentials hidden), or None."""
        return self._api_json

    # -- changing ---------------------------------------------------------------------------

    def set_api(self, obj: Any) -> ProxyConfig:
        """The control API's POST: replaces the API layer (raises ConfigError when invalid,
        leaving everything as it was)."""
        self._api = layer_from_json(obj)
        # As posted, but with the credentials hidden like everywhere else.
        self._api_json = {k: (_redact(v) if k in ("http", "https") and isinstance(v, str) else v)
                          for k, v in obj.items()}
        self._update()
        return self._current

    def check_file(self) -> bool:
        """Re-read the file if it changed; True when the merged configuration changed."""
        if self.file is None:
            return False
        return self._load_file(strict=False) and self._update()

    def refresh_system(self, layer_and_notes: tuple[Layer, list[str]] | None = None) -> bool:
        if not self._scutil:
            return False
        layer, notes = layer_and_notes if layer_and_notes is not None else read_scutil(self._scutil)
        for n in notes:
            self._note(n)
        if layer == self._system:
            return False
        self._system = layer
        return self._update()

    # -- watching ---------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Watch the file (and the system settings) from this event loop."""
        if self._task is None and (self.file is not None or self._scutil):
            loop = loop or asyncio.get_event_loop()
            self._task = loop.create_task(self._watch())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_system = loop.time() + self.system_interval
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self.check_file()
                if self._scutil and loop.time() >= next_system:
                    # scutil is a subprocess: keep it off the network's loop.
                    result = await loop.run_in_executor(None, read_scutil, self._scutil)
                    self.refresh_system(result)
                    next_system = loop.time() + self.system_interval
            except Exception:  # a bug here must not stop the watching
                log.exception("proxy configuration watch failed")

    # -- internals --------------------------------------------------------------------------

    def _note(self, message: str) -> None:
        if message not in self._noted:
            self._noted.add(message)
            log.warning("%s", message)

    def _load_file(self, strict: bool) -> bool:
        """Read the file when its bytes changed; True when the file layer changed."""
        assert self.file is not None
        try:
            with open(self.file, "rb") as f:
                data = f.read(1 << 20)
        except FileNotFoundError:
            data = b""
        except OSError as e:
            msg = f"proxy config {self.file}: cannot read: {e.strerror}; keeping the last good configuration"
            if strict:
                raise ConfigError(f"proxy config {self.file}: cannot read: {e.strerror}") from None
            if msg != self.file_error:
                self.file_error = msg
                log.warning("%s", msg)
            return False
        if data == self._file_bytes:
            return False
        self._file_bytes = data
        if not data.strip():
            layer: Layer = {}  # missing or empty: the file sets nothing
        else:
            try:
                layer = parse_json_text(data)
            except ConfigError as e:
                if strict:
                    raise ConfigError(f"proxy config {self.file}: {e}") from None
                self.file_error = f"proxy config {self.file}: {e}; keeping the last good configuration"
                log.warning("%s", self.file_error)
                return False
        self.file_error = None
        if layer == self._file:
            return False
        self._file = layer
        return True

    def _merge(self) -> ProxyConfig:
        return merge(self._cli, self._api, self._file, self._env, self._system)

    def _update(self) -> bool:
        new = self._merge()
        if new == self._current:
            return False
        self._current = new
        log.info("proxy configuration changed: %s", new.describe())
        for cb in list(self._listeners):
            try:
                cb(new)
            except Exception:
                log.exception("proxy configuration listener failed")
        return True
