"""gvproxy's HTTP API routes (reference/gvisor-tap-vsock.md §3), so podman-style clients work
unchanged:

- ``/services/forwarder/all``: ``[{"local","remote","protocol"}]`` sorted by local, then protocol;
- ``POST /services/forwarder/expose`` ``{"local","remote","protocol"}`` (protocol defaults to
  tcp): 200 with an empty body, 400 for a non-POST ("post only") or bad JSON, 500 with the
  error as plain text (a second expose of the same protocol/local: "proxy already running for
  tcp on :8080");
- ``POST /services/forwarder/unexpose`` ``{"local","protocol"}``: 200, or 500 "proxy not found";
- ``/services/dhcp/leases`` and ``/leases``: ``{"IP": "MAC"}``;
- ``/services/dns/all``: zones with Go's field names; ``POST /services/dns/add`` one zone;
- ``/stats``: the counters in the shape of gVisor's ``tcpip.Stats`` plus BytesSent/BytesReceived.

These routes answer errors the way gvproxy does (Go's ``http.Error``: plain text and a
newline), not with fastnet's JSON errors, since their clients print the body as it is.

Differences, on purpose: a ``remote`` with no host (``":8080"``) means the default guest
(gvproxy uses the HTTP caller's IP, which only means something on its in-VM listener; this API
is a host unix socket); ``ssh-tunnel://`` unix forwards are not implemented (500, as gvproxy
answers for a scheme it does not know).
"""

from __future__ import annotations

import ipaddress
import json

from fastnet.api.http import Request, Response, Router, json_response, text_response
from fastnet.services.config import format_mac
from fastnet.services.ports import PortError, PortSpec


def go_error(message: str, status: int) -> Response:
    """What Go's http.Error writes."""
    resp = text_response(message + "\n", status)
    resp.headers.append(("X-Content-Type-Options", "nosniff"))
    return resp


def _decode(req: Request):
    """Go's json.Decoder.Decode into a struct: the first JSON value of the body."""
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"invalid UTF-8 in the body: {e}") from None
    if not text.strip():
        raise ValueError("EOF")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except json.JSONDecodeError as e:
        raise ValueError(str(e)) from None
    if not isinstance(obj, dict):
        raise ValueError(f"json: cannot unmarshal {type(obj).__name__} into Go value of type types.ExposeRequest")
    return obj


def _split_host_port(text: str) -> tuple[str, int]:
    """net.SplitHostPort, then the port as a number."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"address {text}: missing port in address")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {text}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {text}: too many colons in address")
    try:
        n = int(port)
    except ValueError:
        raise ValueError(f"invalid port {port!r}") from None
    if not 0 <= n < 65536:
        raise ValueError(f"invalid port {port!r}")
    return host, n


def _strings(obj: dict, *keys: str) -> dict:
    out = {}
    for k in keys:
        v = obj.get(k, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise ValueError(f"json: cannot unmarshal {type(v).__name__} into Go struct field .{k} of type string")
        out[k] = v
    return out


class GvproxyRoutes:
    def __init__(self, control):
        self.c = control

    def register(self, router: Router) -> None:
        router.add(None, "/services/forwarder/all", self.all)
        router.add(None, "/services/forwarder/expose", self.expose)
        router.add(None, "/services/forwarder/unexpose", self.unexpose)
        router.add(None, "/services/dhcp/leases", self.leases)
        router.add(None, "/leases", self.leases)
        router.add(None, "/services/dns/all", self.dns_all)
        router.add(None, "/services/dns/add", self.dns_add)
        router.add(None, "/stats", self.stats)

    # -- forwarder ---------------------------------------------------------------------------

    def _find(self, proto: str, local: str):
        """The forward gvproxy would know as (protocol, local), or None."""
        return next((f for f in self.c.ports.list() if (f.proto, f.local) == (proto, local)), None)

    def all(self, req: Request) -> Response:
        out = [{"local": f.local, "remote": f.remote, "protocol": f.proto} for f in self.c.ports.list()]
        out.sort(key=lambda d: (d["local"], d["protocol"]))
        return json_response(out)

    def expose(self, req: Request) -> Response:
        if req.method != "POST":
            return go_error("post only", 400)
        try:
            obj = _decode(req)
            fields = _strings(obj, "local", "remote", "protocol")
        except ValueError as e:
            return go_error(str(e), 400)
        proto = fields["protocol"] or "tcp"
        local, remote = fields["local"], fields["remote"]
        if proto not in ("unix", "npipe"):
            # gvproxy's remote(): net.SplitHostPort, an empty host filled in.
            try:
                rhost, rport = _split_host_port(remote)
            except ValueError as e:
                return go_error(str(e), 400)
            if not rhost:
                guest = self.c.ports.default_guest()
                if guest is None:
                    return go_error(f"remote {remote!r} has no host and there is no default guest", 400)
                remote = f"{guest}{remote}"
        if self._find(proto, local) is not None:
            return go_error(f"proxy already running for {proto} on {local}", 500)
        try:
            spec = self._spec(proto, local, remote)
            self.c.ports.add(spec, origin="gvproxy", local=local, remote=remote)
        except (PortError, ValueError) as e:
            return go_error(str(e), 500)
        return Response(200)

    def _spec(self, proto: str, local: str, remote: str) -> PortSpec:
        if proto == "npipe":
            raise ValueError("npipe forwards exist on Windows only")
        if proto == "unix":
            scheme, sep, rest = remote.partition("://")
            if not sep or scheme != "tcp":
                raise ValueError(f"remote protocol for unix forwarder is not implemented: {scheme if sep else ''}")
            host, port = _split_host_port(rest.rstrip("/"))
            return PortSpec(proto="unix", path=local, guest_addr=self._guest(host), guest_port=port)
        if proto not in ("tcp", "udp"):
            raise ValueError(f"unknown protocol {proto}")
        host, port = _split_host_port(local)
        # gvproxy's tcpipAddress: exactly "ip:port", IPv4.
        parts = remote.split(":")
        if len(parts) != 2:
            raise ValueError("invalid remote addr")
        try:
            gport = int(parts[1])
        except ValueError:
            raise ValueError(f"strconv.ParseUint: parsing {parts[1]!r}: invalid syntax") from None
        # Go's ":port" listens on every address; so does "" here.
        return PortSpec(proto=proto, host_addr=host, host_port=port,
                        guest_addr=self._guest(parts[0]), guest_port=gport)

    def _guest(self, host: str):
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"invalid remote addr {host!r}: not an IPv4 address") from None

    def unexpose(self, req: Request) -> Response:
        if req.method != "POST":
            return go_error("post only", 400)
        try:
            fields = _strings(_decode(req), "local", "protocol")
        except ValueError as e:
            return go_error(str(e), 400)
        proto = fields["protocol"] or "tcp"
        fwd = self._find(proto, fields["local"])
        if fwd is None:
            return go_error("proxy not found", 500)
        self.c.ports.remove(fwd.id)
        return Response(200)

    # -- DHCP, DNS ---------------------------------------------------------------------------

    def leases(self, req: Request) -> Response:
        cfg = self.c.network.config
        out = {str(cfg.gateway): format_mac(cfg.gateway_mac)}
        for lease in self.c.network.pool.leases():
            out[str(lease.ip)] = format_mac(lease.mac)
        return json_response(out)

    def dns_all(self, req: Request) -> Response:
        dns = self.c.network.dns
        zones = dns.zones() if dns is not None else []
        out = []
        for z in zones:
            if z.get("guests"):
                continue  # the guests' own names are not a zone gvproxy clients can edit
            records = []
            for r in z["records"]:
                rec = {"Name": r["name"], "IP": r["ip"]}
                if r.get("regexp"):
                    rec["Regexp"] = r["regexp"]
                records.append(rec)
            out.append({"Name": z["name"], "Records": records, "DefaultIP": z["default_ip"] or ""})
        return json_response(out)

    def dns_add(self, req: Request) -> Response:
        if req.method != "POST":
            return go_error("post only", 400)
        dns = self.c.network.dns
        try:
            obj = _decode(req)
        except ValueError as e:
            return go_error(str(e), 400)
        if dns is None:
            return go_error("the DNS service is disabled", 500)
        try:
            dns.add_zone(obj)
        except ValueError as e:
            return go_error(str(e), 400)
        return Response(200)

    # -- stats -------------------------------------------------------------------------------

    def stats(self, req: Request) -> Response:
        return json_response(gvisor_stats(self.c.network))


def gvisor_stats(network) -> dict:
    """fastnet's counters under the names of gVisor's tcpip.Stats (those gvproxy's /stats
    shows); counters fastnet does not keep are 0."""
    rx_frames = rx_bytes = tx_frames = tx_bytes = 0
    ip_in = malformed = unknown = dropped = arp_in = arp_replies = frag_bad = 0
    echo_req = echo_rep = 0
    t = {k: 0 for k in ("segs_in", "segs_out", "flows_opened", "flows_active", "rst_in", "rst_out", "bad_csum",
                        "bad_seq", "rexmits", "fast_rexmits", "timeouts", "refused", "syn_absorbed")}
    u = {k: 0 for k in ("datagrams_in", "datagrams_out", "bad_csum", "send_errors", "refused", "icmp_errors_out")}
    active_opens = established = 0
    for p in network.ports:
        ls = p.link.stats()
        rx_frames += ls.get("rx_frames", 0)
        rx_bytes += ls.get("rx_bytes", 0)
        tx_frames += ls.get("tx_frames", 0)
        tx_bytes += ls.get("tx_bytes", 0)
        st = p.stack.stats()
        kinds = st.get("kinds", {})
        ip_in += sum(v for k, v in kinds.items() if k.endswith("4") or "ipv4" in k)
        arp_in += kinds.get("arp", 0)
        malformed += sum(st.get("malformed", {}).values())
        unknown += st.get("dropped_proto", 0)
        dropped += st.get("slow_dropped", 0) + st.get("not_for_us", 0)
        arp_replies += st.get("arp_replies", 0)
        echo_rep += st.get("gw_echo_replies", 0)
        frag_bad += sum(v for k, v in st.get("fragments", {}).items() if "bad" in k or "dropped" in k)
        es = p.engine.stats()
        for k in t:
            t[k] += es.get(k, 0)
        ds = p.stack.dgram_stats()
        for k in u:
            u[k] += ds.get(k, 0)
        active_opens += p.forwarder.flow_events.get("opened", 0)
        established += sum(1 for f in p.engine.flows() if f["state"].name == "ESTABLISHED")
        echo_req += p.forwarder.flow_events.get("icmp_new", 0)
    return {
        "BytesSent": tx_bytes, "BytesReceived": rx_bytes,
        "UnknownProtocolRcvdPackets": unknown, "MalformedRcvdPackets": malformed, "DroppedPackets": dropped,
        "NICs": {"UnknownL4ProtocolRcvdPackets": unknown, "MalformedL4RcvdPackets": malformed,
                 "Tx": {"Packets": tx_frames, "Bytes": tx_bytes}, "Rx": {"Packets": rx_frames, "Bytes": rx_bytes}},
        "ICMP": {"V4": {"PacketsReceived": {"EchoRequest": echo_req},
                        "PacketsSent": {"EchoReply": echo_rep, "DstUnreachable": u["icmp_errors_out"]}}},
        "IGMP": {"PacketsReceived": {}, "PacketsSent": {}},
        "IP": {"PacketsReceived": ip_in, "InvalidDestinationAddressesReceived": 0,
               "InvalidSourceAddressesReceived": 0, "PacketsDelivered": ip_in, "PacketsSent": tx_frames,
               "OutgoingPacketErrors": 0, "MalformedPacketsReceived": malformed,
               "MalformedFragmentsReceived": frag_bad},
        "ARP": {"PacketsReceived": arp_in, "OutgoingRepliesSent": arp_replies},
        "TCP": {"ActiveConnectionOpenings": active_opens,
                "PassiveConnectionOpenings": max(0, t["flows_opened"] - active_opens),
                "CurrentEstablished": established, "CurrentConnected": t["flows_active"],
                "EstablishedResets": t["rst_in"], "EstablishedClosed": 0, "EstablishedTimedout": 0,
                "ListenOverflowSynDrop": 0, "ListenOverflowAckDrop": 0, "ListenOverflowSynCookieSent": 0,
                "ListenOverflowSynCookieRcvd": 0, "ListenOverflowInvalidSynCookieRcvd": 0,
                "FailedConnectionAttempts": t["refused"], "ValidSegmentsReceived": t["segs_in"],
                "InvalidSegmentsReceived": t["bad_csum"] + t["bad_seq"], "SegmentsSent": t["segs_out"],
                "SegmentSendErrors": 0, "ResetsSent": t["rst_out"], "ResetsReceived": t["rst_in"],
                "Retransmits": t["rexmits"], "FastRecovery": 0, "SACKRecovery": 0, "SlowStartRetransmits": 0,
                "FastRetransmit": t["fast_rexmits"], "Timeouts": t["timeouts"]},
        "UDP": {"PacketsReceived": u["datagrams_in"], "UnknownPortErrors": u["refused"], "ReceiveBufferErrors": 0,
                "MalformedPacketsReceived": u["bad_csum"], "PacketsSent": u["datagrams_out"],
                "PacketSendErrors": u["send_errors"]},
    }
