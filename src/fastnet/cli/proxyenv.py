"""``fastnet proxy-env``: the proxy variables a guest should get, from the host's settings.

    fastnet proxy-env                          # HTTP_PROXY=... http_proxy=... NO_PROXY=... no_proxy=...
    fastnet proxy-env --format json
    fastnet proxy-env --format docker          # writes "proxies" into ~/.docker/config.json
    fastnet proxy-env --write-docker-config PATH --watch   # and keeps it in step with changes

The settings are detected as fastnet.services.proxyconf describes (flags, --proxy-file,
the environment, macOS system settings). ``no_proxy`` always lists the virtual network's own
names (host.docker.internal, gateway.docker.internal, ...), localhost and the subnet.
Credentials are left out unless --with-credentials; ``--via gateway`` points guests at
fastnet's explicit proxy on gateway:3128 instead, which needs no credentials in the guest.

The env format is ``NAME=value`` lines, usable as a ``docker run --env-file`` and by a shell
(values that would need quoting are quoted). With --watch, the output is printed again after
each change (json: one object per line) and the Docker config is rewritten; it runs until
SIGINT or SIGTERM. Writes to the Docker config are atomic and keep every other key (and other
entries of "proxies") as they were.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import tempfile

from fastnet.cli.common import run_until_signalled, setup_logging
from fastnet.errors import ConfigError
from fastnet.services.config import NetworkConfig, load_toml, network_from_dict
from fastnet.services.proxyconf import ProxyConfig, ProxyConfigSource, docker_proxies, guest_environment


def add_proxy_source_options(g, *, serve: bool = False) -> None:
    """Where the proxy settings come from; shared by ``serve`` and ``proxy-env``."""
    g.add_argument("--proxy-file", metavar="FILE",
                   help="proxy settings as vpnkit's JSON (http, https, exclude, transparent_*_ports); watched")
    g.add_argument("--http-proxy", metavar="URL", help="upstream proxy for http:// (overrides every other source)")
    g.add_argument("--https-proxy", metavar="URL", help="upstream proxy for https:// (overrides every other source)")
    g.add_argument("--no-proxy", metavar="LIST", help="destinations that bypass the proxy, NO_PROXY syntax")
    g.add_argument("--ignore-env-proxy", action="store_true",
                   help="do not read http_proxy/https_proxy/all_proxy/no_proxy from the environment")
    g.add_argument("--ignore-system-proxy", action="store_true",
                   help="do not read the macOS system settings (scutil --proxy)")
    if serve:
        g.add_argument("--transparent-proxy", choices=("auto", "on", "off"), default="auto",
                       help="intercept guest HTTP/HTTPS (ports 80/443 unless the file says otherwise): "
                            "auto = when an upstream proxy is configured (default)")
        g.add_argument("--disable-proxy", action="store_true",
                       help="no proxy at all: neither gateway:3128 nor interception")


def proxy_source_from_args(args) -> ProxyConfigSource:
    overrides = {}
    for flag, key in (("http_proxy", "http"), ("https_proxy", "https"), ("no_proxy", "exclude")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    transparent = getattr(args, "transparent_proxy", "auto")
    if transparent != "auto":
        overrides["transparent"] = transparent == "on"
    try:
        return ProxyConfigSource(file=args.proxy_file, environ={} if args.ignore_env_proxy else None,
                                 system=False if args.ignore_system_proxy else None, overrides=overrides)
    except ConfigError as e:
        raise ConfigError(f"proxy settings: {e}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("proxy-env", help="print the proxy variables for guests (or write them to a Docker config)",
                       description="The proxy variables a guest should get, from the host's settings "
                                   "(flags, --proxy-file, the environment, macOS system settings).")
    p.add_argument("--format", choices=("env", "json", "docker"), default="env",
                   help="env: NAME=value lines (default); json: one object; docker: write the Docker client config")
    p.add_argument("--write-docker-config", metavar="PATH",
                   help="write the 'proxies' section of this Docker client config (default for --format docker: "
                        "$DOCKER_CONFIG/config.json or ~/.docker/config.json)")
    p.add_argument("--watch", action="store_true", help="keep running and follow every change")
    p.add_argument("--via", choices=("upstream", "gateway"), default="upstream",
                   help="upstream: the host's proxies (default); gateway: fastnet's proxy on gateway:3128, "
                        "which adds the credentials itself (the choice for a proxy that needs them)")
    p.add_argument("--with-credentials", action="store_true",
                   help="include user:password from the proxy URLs (left out by default)")
    g = p.add_argument_group("sources")
    add_proxy_source_options(g)
    n = p.add_argument_group("virtual network (for no_proxy)")
    n.add_argument("--config", metavar="FILE", help="fastnet TOML config with [network] settings")
    n.add_argument("--subnet", help="virtual subnet (default 192.168.65.0/24)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.set_defaults(run=run)


def default_docker_config() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def write_docker_config(path: str, proxies: dict[str, str]) -> bool:
    """Set (or, when empty, remove) ``proxies.default`` in a Docker client config, keeping every
    other key; atomic (a temporary file renamed over the old one, same mode and owner).
    Returns whether the file changed. A file that is not a JSON object is left alone."""
    path = os.path.realpath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        st = os.stat(path)
    except FileNotFoundError:
        text, st = "", None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); not touching it") from None
    if not isinstance(data, dict) or not isinstance(data.get("proxies", {}), dict):
        raise ConfigError(f"{path} is not a Docker client config; not touching it")
    section = dict(data.get("proxies", {}))
    if proxies:
        section["default"] = dict(proxies)
    else:
        section.pop("default", None)
    new = dict(data)
    if section:
        new["proxies"] = section
    else:
        new.pop("proxies", None)
    if st is not None and new == data:
        return False
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=directory)
    try:
        os.fchmod(fd, (st.st_mode & 0o777) if st else 0o600)
        if st is not None and os.geteuid() == 0:
            os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(new, f, indent="\t")  # Docker writes its config with tabs
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


def network_config(args) -> NetworkConfig:
    cfg = NetworkConfig()
    if args.config:
        cfg = network_from_dict(load_toml(args.config), cfg)
    if args.subnet:
        import ipaddress

        try:
            subnet = ipaddress.IPv4Network(args.subnet, strict=False)
        except ValueError:
            raise ConfigError(f"--subnet: not an IPv4 network: {args.subnet!r}") from None
        base = subnet.network_address
        cfg = cfg.replace(subnet=subnet, gateway=base + 1, host_alias=base + 2, first_guest=base + 3,
                          last_guest=subnet.broadcast_address - 1)
    return cfg


def format_env(env: dict[str, str]) -> str:
    lines = []
    for name, value in env.items():
        # URLs (credentials percent-encoded) and no_proxy lists never need quoting in an
        # assignment (no word splitting or globbing there), and --env-file takes no quotes;
        # anything else is quoted for a shell.
        safe = all(c.isalnum() or c in "-_.:/,@%+=[]*" for c in value)
        lines.append(f"{name}={value if safe else shlex.quote(value)}")
    return "\n".join(lines) + ("\n" if lines else "")


class _Emitter:
    def __init__(self, args, network: NetworkConfig):
        self.args = args
        self.network = network
        self.docker_path = args.write_docker_config or (default_docker_config() if args.format == "docker" else None)
        self.last: dict | None = None
        self.first = True

    def __call__(self, cfg: ProxyConfig) -> None:
        env = guest_environment(cfg, self.network, via=self.args.via, credentials=self.args.with_credentials)
        if env == self.last:
            return
        self.last = env
        out = sys.stdout
        if self.args.format == "env":
            if not self.first:
                out.write("\n")
            out.write(format_env(env))
        elif self.args.format == "json":
            out.write(json.dumps(env) + "\n" if self.args.watch else json.dumps(env, indent=2) + "\n")
        if self.docker_path:
            try:
                changed = write_docker_config(self.docker_path, docker_proxies(env))
            except (ConfigError, OSError) as e:
                if not self.args.watch:
                    raise
                print(f"fastnet proxy-env: {e}", file=sys.stderr)
            else:
                if self.args.format == "docker":
                    out.write(f"{'updated' if changed else 'unchanged'} {self.docker_path}\n")
        out.flush()
        self.first = False


def run(args) -> int:
    setup_logging(args.verbose)
    network = network_config(args)
    source = proxy_source_from_args(args)
    emit = _Emitter(args, network)
    emit(source.current)
    if not args.watch:
        return 0
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    source.subscribe(emit)
    source.start(loop)
    run_until_signalled(loop, source.close)
    loop.close()
    return 0
