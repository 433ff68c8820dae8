"""Prometheus text exposition (format 0.0.4) of fastnet's counters, for ``GET /metrics``.

Counters end in ``_total``; gauges are current values. Per-link series carry ``link`` (the
port's name) and ``kind`` (tap, vmnet, qemu, vfkit, stdio); published-port series carry
``id`` and ``proto``.
"""

from __future__ import annotations

import time

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {help_text}")
            self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value, **labels) -> None:
        lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# (metric, type, help, source, key): source is where the per-link number comes from.
LINK_METRICS = [
    ("fastnet_link_frames_total", "counter", "Frames on a guest link.", "link", {"in": "rx_frames", "out": "tx_frames"}),
    ("fastnet_link_bytes_total", "counter", "Bytes on a guest link.", "link", {"in": "rx_bytes", "out": "tx_bytes"}),
    ("fastnet_tcp_segments_total", "counter", "TCP segments to and from the guest.", "tcp",
     {"in": "segs_in", "out": "segs_out"}),
    ("fastnet_tcp_bytes_total", "counter", "TCP payload bytes to and from the guest.", "tcp",
     {"in": "bytes_in", "out": "bytes_out"}),
    ("fastnet_udp_datagrams_total", "counter", "UDP datagrams and ICMP echoes relayed.", "udp",
     {"in": "datagrams_in", "out": "datagrams_out"}),
]
TCP_COUNTERS = [
    ("fastnet_tcp_flows_opened_total", "flows_opened", "TCP flows opened."),
    ("fastnet_tcp_flows_closed_total", "flows_closed", "TCP flows closed."),
    ("fastnet_tcp_retransmits_total", "rexmits", "TCP segments retransmitted to the guest."),
    ("fastnet_tcp_resets_received_total", "rst_in", "RSTs received from the guest."),
    ("fastnet_tcp_resets_sent_total", "rst_out", "RSTs sent to the guest."),
    ("fastnet_tcp_refused_total", "refused", "Guest connections refused."),
]


def render(network, ports=None, *, started: float | None = None) -> str:
    w = _Writer()
    if started is not None:
        w.family("fastnet_uptime_seconds", "gauge", "Seconds since fastnet started.")
        w.sample("fastnet_uptime_seconds", round(time.time() - started, 3))
    w.family("fastnet_links", "gauge", "Guest links attached.")
    w.sample("fastnet_links", len(network.ports))
    # Each link's counters read once per scrape, then written family by family.
    stats = [(p, {"link": p.link.stats(), "tcp": p.engine.stats(), "udp": p.stack.dgram_stats(),
                  "stack": p.stack.stats()}) for p in network.ports]
    for name, kind, help_text, source, keys in LINK_METRICS:
        w.family(name, kind, help_text)
        for p, st in stats:
            for direction, key in keys.items():
                w.sample(name, st[source].get(key, 0), link=p.name, kind=p.kind, direction=direction)
    for name, key, help_text in TCP_COUNTERS:
        w.family(name, "counter", help_text)
        for p, st in stats:
            w.sample(name, st["tcp"].get(key, 0), link=p.name, kind=p.kind)
    w.family("fastnet_tcp_flows", "gauge", "TCP flows open.")
    for p, st in stats:
        w.sample("fastnet_tcp_flows", st["tcp"].get("flows_active", 0), link=p.name, kind=p.kind)
    w.family("fastnet_udp_flows", "gauge", "UDP and ICMP flows open.")
    for p, st in stats:
        w.sample("fastnet_udp_flows", st["udp"].get("flows_active", 0), link=p.name, kind=p.kind)
    w.family("fastnet_link_malformed_frames_total", "counter", "Frames from the guest that did not parse.")
    for p, st in stats:
        w.sample("fastnet_link_malformed_frames_total", sum(st["stack"].get("malformed", {}).values()),
                 link=p.name, kind=p.kind)
    dns = network.dns.stats() if network.dns is not None else None
    if dns is not None:
        w.family("fastnet_dns_queries_total", "counter", "DNS queries answered by the gateway, by rcode.")
        for rcode, n in sorted(dns.get("rcodes", {}).items()):
            w.sample("fastnet_dns_queries_total", n, rcode=rcode)
        cache = dns.get("cache", {})
        if isinstance(cache, dict):
            for key in ("hits", "misses"):
                if key in cache:
                    w.family(f"fastnet_dns_cache_{key}_total", "counter", f"DNS cache {key}.")
                    w.sample(f"fastnet_dns_cache_{key}_total", cache[key])
    if ports is not None:
        fwds = ports.list()
        w.family("fastnet_published_ports", "gauge", "Published ports.")
        w.sample("fastnet_published_ports", len(fwds))
        w.family("fastnet_published_connections_total", "counter",
                 "Clients accepted by a published port (UDP: client flows).")
        for f in fwds:
            w.sample("fastnet_published_connections_total", f.accepted, id=f.id, proto=f.proto, local=f.local)
        w.family("fastnet_published_refused_total", "counter", "Clients of a published port reset (no guest).")
        for f in fwds:
            w.sample("fastnet_published_refused_total", f.refused, id=f.id, proto=f.proto, local=f.local)
        w.family("fastnet_published_active_connections", "gauge", "Open connections of a published port.")
        for f in fwds:
            active = len(f.live_tcp()) if f.proto != "udp" else len(f.udp_clients)
            w.sample("fastnet_published_active_connections", active, id=f.id, proto=f.proto, local=f.local)
    return w.text()
