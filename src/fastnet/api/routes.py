"""The control API's routes.

fastnet's own, under /v1, JSON in and out; an error is ``{"error": "...", "status": N}``
with 400 for a malformed request (naming the problem), 404 for an unknown route or object,
405 for a method a route does not take, 409 for a port already allocated:

- ``GET /v1/info``: version, addresses, API path;
- ``GET /v1/ports``: every published port in full detail; ``POST /v1/ports`` publishes one
  (``{"proto","host_addr","host_port","guest_addr","guest_port","path"}`` or
  ``{"spec": "[HOSTADDR:]HOSTPORT:GUESTADDR:GUESTPORT", "proto": "udp"}``; 201 with the port,
  200 when that very forward exists already); ``GET /v1/ports/{id}``; ``DELETE
  /v1/ports/{id}[?close_connections=1]``; ``POST /v1/ports/remove`` with ``{"id"}`` or the
  forward's host side (``{"spec"}``, ``{"proto","host_addr","host_port"}``, ``{"path"}``) and
  ``"close_connections"``;
- ``GET /v1/flows``: the flow table, like ``ss`` (TCP, UDP and ICMP; who opened it; bytes);
- ``GET /v1/stats``: every counter; ``GET /metrics``: the same as Prometheus text;
- ``GET /v1/pcap``, ``POST /v1/pcap/start`` ``{"path", "link"?, "snaplen"?}``,
  ``POST /v1/pcap/stop`` ``{"link"?}``;
- ``GET /v1/proxy``, ``POST /v1/proxy``: the HTTP proxy settings given through the API
  (vpnkit's JSON, fastnet.services.proxyconf);
- ``GET /v1/dns/zones``, ``POST /v1/dns/zones`` (a zone, gvproxy's or our spelling),
  ``DELETE /v1/dns/zones/{name}``, ``POST /v1/dns/records`` ``{"name","ip","zone"?}``,
  ``DELETE /v1/dns/records`` ``{"name","ip"?}``;
- ``GET /v1/leases``: the address pool's leases.

gvproxy's routes are in fastnet.api.gvproxy.
"""

from __future__ import annotations

import os
import time

from fastnet import __version__
from fastnet.api import metrics
from fastnet.api.gvproxy import GvproxyRoutes
from fastnet.api.http import ApiError, HttpServer, Request, Response, Router, json_response, text_response
from fastnet.errors import ConfigError
from fastnet.services.config import format_mac
from fastnet.services.ports import PortError, PortSpec, PublishedPorts, normalize_host_addr, parse_host_side, parse_publish

PORT_ERROR_STATUS = {"in_use": 409, "exists": 409, "address": 400, "permission": 403, "invalid": 400,
                     "not_found": 404}


def port_error(e: PortError) -> ApiError:
    return ApiError(PORT_ERROR_STATUS.get(e.kind, 400), str(e))


class ControlApi:
    """Routes over one network and its published ports (all on the network's loop)."""

    def __init__(self, network, ports: PublishedPorts, *, proxy_source=None, api_path: str | None = None):
        self.network = network
        self.ports = ports
        self.proxy_source = proxy_source
        self.api_path = api_path
        self.started = time.time()
        self.pcaps: dict[str, str] = {}          # link name -> pcap path being written
        self.router = Router()
        r = self.router
        r.add("GET", "/v1/info", self.info)
        r.add("GET", "/v1/ports", self.list_ports)
        r.add("POST", "/v1/ports", self.add_port)
        r.add("GET", "/v1/ports/{id}", self.get_port)
        r.add("DELETE", "/v1/ports/{id}", self.delete_port)
        r.add("POST", "/v1/ports/remove", self.remove_port)
        r.add("GET", "/v1/flows", self.flows)
        r.add("GET", "/v1/stats", self.stats)
        r.add("GET", "/metrics", self.metrics)
        r.add("GET", "/v1/pcap", self.pcap_list)
        r.add("POST", "/v1/pcap/start", self.pcap_start)
        r.add("POST", "/v1/pcap/stop", self.pcap_stop)
        r.add("GET", "/v1/proxy", self.proxy_get)
        r.add(("POST", "PUT"), "/v1/proxy", self.proxy_set)
        r.add("GET", "/v1/dns/zones", self.dns_zones)
        r.add("POST", "/v1/dns/zones", self.dns_add_zone)
        r.add("DELETE", "/v1/dns/zones/{name}", self.dns_remove_zone)
        r.add("POST", "/v1/dns/records", self.dns_add_record)
        r.add("DELETE", "/v1/dns/records", self.dns_remove_record)
        r.add("GET", "/v1/leases", self.leases)
        GvproxyRoutes(self).register(r)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _object(req: Request) -> dict:
        obj = req.json()
        if not isinstance(obj, dict):
            raise ApiError(400, f"the body must be a JSON object, not {type(obj).__name__}")
        return obj

    def _forward(self, text: str):
        try:
            fid = int(text)
        except ValueError:
            raise ApiError(400, f"a port id is a number, not {text!r}") from None
        fwd = self.ports.forwards.get(fid)
        if fwd is None:
            raise ApiError(404, f"no published port with id {fid}")
        return fwd

    def _spec(self, obj: dict) -> PortSpec:
        try:
            if "spec" in obj:
                text, proto = obj.get("spec"), obj.get("proto") or "tcp"
                extra = set(obj) - {"spec", "proto", "close_connections"}
                if extra:
                    raise PortError(f"unknown field(s) with spec: {', '.join(sorted(extra))}")
                if not isinstance(text, str) or not isinstance(proto, str):
                    raise PortError("spec and proto must be strings")
                spec = parse_publish(text, "tcp" if proto == "unix" else proto)
                return spec
            return PortSpec.from_json({k: v for k, v in obj.items() if k != "close_connections"})
        except PortError as e:
            raise port_error(e) from None

    # -- info, ports ---------------------------------------------------------------------------

    def info(self, req: Request) -> Response:
        cfg = self.network.config
        return json_response({
            "version": __version__, "pid": os.getpid(), "api": self.api_path, "started": round(self.started, 3),
            "subnet": str(cfg.subnet), "gateway": str(cfg.gateway), "gateway_mac": format_mac(cfg.gateway_mac),
            "host_alias": str(cfg.host_alias) if cfg.host_alias is not None else None,
            "dns": str(cfg.dns_server) if self.network.dns is not None else None, "mtu": cfg.mtu,
            "links": [{"name": p.name, "kind": p.kind, "uuid": p.uuid,
                       "ip": str(p.lease.ip) if p.lease else None,
                       "mac": format_mac(p.guest_mac) if p.guest_mac else None} for p in self.network.ports],
            "default_guest": str(self.ports.default_guest() or "") or None,
            "ports_state_file": self.ports.state_file,
        })

    def list_ports(self, req: Request) -> Response:
        return json_response([f.as_dict() for f in self.ports.list()])

    def add_port(self, req: Request) -> Response:
        obj = self._object(req)
        spec = self._spec(obj)
        existed = self.ports.find_spec(spec)
        try:
            fwd = self.ports.add(spec, origin="api")
        except PortError as e:
            raise port_error(e) from None
        return json_response(fwd.as_dict(), 200 if existed is fwd else 201)

    def get_port(self, req: Request) -> Response:
        return json_response(self._forward(req.params["id"]).as_dict())

    def delete_port(self, req: Request) -> Response:
        fwd = self._forward(req.params["id"])
        self.ports.remove(fwd.id, close_connections=req.flag("close_connections"))
        return json_response(fwd.as_dict())

    def remove_port(self, req: Request) -> Response:
        obj = self._object(req)
        close = obj.get("close_connections", False)
        if not isinstance(close, bool):
            raise ApiError(400, "close_connections must be true or false")
        if "id" in obj:
            if set(obj) - {"id", "close_connections"}:
                raise ApiError(400, "give either id or the forward's host side, not both")
            fwd = self._forward(str(obj["id"]))
        else:
            proto = obj.get("proto") or "tcp"
            if not isinstance(proto, str):
                raise ApiError(400, "proto must be a string")
            try:
                if "spec" in obj:
                    if not isinstance(obj["spec"], str):
                        raise PortError("spec must be a string")
                    proto, host_addr, host_port, path = parse_host_side(obj["spec"], proto)
                elif obj.get("path") is not None:
                    proto, host_addr, host_port, path = "unix", None, 0, obj["path"]
                else:
                    host_port = obj.get("host_port")
                    if isinstance(host_port, bool) or not isinstance(host_port, int):
                        raise PortError("give id, spec, path, or host_port (and host_addr, proto)")
                    host_addr = obj.get("host_addr")
                    if host_addr is not None:
                        host_addr = normalize_host_addr(host_addr)
                    path = None
            except PortError as e:
                raise port_error(e) from None
            if not isinstance(path, (str, type(None))):
                raise ApiError(400, "path must be a string")
            fwd = self.ports.find(proto, host_addr, host_port, path)
            if fwd is None:
                where = path if proto == "unix" else f"{host_addr or '*'}:{host_port}"
                raise ApiError(404, f"no published {proto} port {where}")
        self.ports.remove(fwd.id, close_connections=close)
        return json_response(fwd.as_dict())

    # -- flows, stats, metrics -------------------------------------------------------------------

    def flows(self, req: Request) -> Response:
        return json_response(flow_table(self.network, self.ports))

    def stats(self, req: Request) -> Response:
        out = {"version": __version__, "uptime_s": round(time.time() - self.started, 3),
               "network": self.network.stats(),
               "published": [f.as_dict() for f in self.ports.list()],
               "api": {"requests": self.router.requests, "errors": self.router.errors}}
        return json_response(out)

    def metrics(self, req: Request) -> Response:
        return text_response(metrics.render(self.network, self.ports, started=self.started),
                             content_type=metrics.CONTENT_TYPE)

    # -- pcap --------------------------------------------------------------------------------------

    def _links(self, obj: dict):
        name = obj.get("link")
        if name is None:
            return list(self.network.ports)
        if not isinstance(name, str):
            raise ApiError(400, "link must be a string (a link's name, as /v1/info lists them)")
        links = [p for p in self.network.ports if p.name == name]
        if not links:
            raise ApiError(404, f"no link named {name!r}")
        return links

    def pcap_list(self, req: Request) -> Response:
        return json_response([{"link": p.name, "path": self.pcaps.get(p.name), "frames": p.link.pcap_frames}
                              for p in self.network.ports if p.name in self.pcaps])

    def pcap_start(self, req: Request) -> Response:
        obj = self._object(req)
        path, snaplen = obj.get("path"), obj.get("snaplen", 0)
        if not isinstance(path, str) or not path:
            raise ApiError(400, "path (the pcap file to write) is required")
        if isinstance(snaplen, bool) or not isinstance(snaplen, int) or snaplen < 0:
            raise ApiError(400, "snaplen must be a non-negative integer")
        links = self._links(obj)
        if not links:
            raise ApiError(409, "no link is attached yet")
        out = []
        root, ext = os.path.splitext(path)
        for i, p in enumerate(links):
            # One file per link: the first as given, the others with the link's name added.
            where = path if i == 0 else f"{root}-{p.name}{ext or '.pcap'}"
            try:
                p.link.pcap(where, snaplen)
            except OSError as e:
                raise ApiError(400, f"cannot write {where}: {e.strerror or e}") from None
            self.pcaps[p.name] = where
            out.append({"link": p.name, "path": where})
        return json_response(out)

    def pcap_stop(self, req: Request) -> Response:
        obj = self._object(req) if req.body.strip() else {}
        out = []
        for p in self._links(obj):
            if p.name in self.pcaps:
                p.link.pcap(None)
                out.append({"link": p.name, "path": self.pcaps.pop(p.name), "frames": p.link.pcap_frames})
        return json_response(out)

    # -- proxy -------------------------------------------------------------------------------------

    def _proxy(self):
        if self.proxy_source is None:
            raise ApiError(404, "the HTTP proxy is disabled (--disable-proxy)")
        return self.proxy_source

    def proxy_get(self, req: Request) -> Response:
        src = self._proxy()
        return json_response({"current": src.api_json(credentials=False),
                              "api": src.api_layer_json()})

    def proxy_set(self, req: Request) -> Response:
        src = self._proxy()
        obj = self._object(req)
        try:
            src.set_api(obj)
        except ConfigError as e:
            raise ApiError(400, str(e)) from None
        return json_response({"current": src.api_json(credentials=False)})

    # -- DNS ---------------------------------------------------------------------------------------

    def _dns(self):
        if self.network.dns is None:
            raise ApiError(404, "the DNS service is disabled")
        return self.network.dns

    def dns_zones(self, req: Request) -> Response:
        return json_response(self._dns().zones())

    def dns_add_zone(self, req: Request) -> Response:
        dns = self._dns()
        try:
            return json_response(dns.add_zone(self._object(req)), 201)
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    def dns_remove_zone(self, req: Request) -> Response:
        if not self._dns().remove_zone(req.params["name"]):
            raise ApiError(404, f"no zone {req.params['name']!r}")
        return json_response({"removed": req.params["name"]})

    def dns_add_record(self, req: Request) -> Response:
        obj = self._object(req)
        name, ip, zone = obj.get("name"), obj.get("ip"), obj.get("zone")
        if not isinstance(name, str) or not isinstance(ip, str) or (zone is not None and not isinstance(zone, str)):
            raise ApiError(400, "name and ip (strings) are required; zone is optional")
        try:
            return json_response(self._dns().add_record(name, ip, zone), 201)
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    def dns_remove_record(self, req: Request) -> Response:
        obj = self._object(req)
        name, ip = obj.get("name"), obj.get("ip")
        if not isinstance(name, str) or (ip is not None and not isinstance(ip, str)):
            raise ApiError(400, "name (a string) is required; ip is optional")
        try:
            n = self._dns().remove_record(name, ip)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        if not n:
            raise ApiError(404, f"no record {name!r}" + (f" with {ip}" if ip else ""))
        return json_response({"removed": n})

    def leases(self, req: Request) -> Response:
        return json_response([{"ip": str(l.ip), "mac": format_mac(l.mac), "uuid": l.uuid, "hostname": l.hostname}
                              for l in self.network.pool.leases()])


def flow_table(network, ports: PublishedPorts | None) -> list[dict]:
    """Every flow of every link, like ``ss``: TCP from the engines, UDP and ICMP from the
    datagram NAT; ``forward`` is the published port that opened it (direction "in")."""
    owners = ports.flow_owners() if ports is not None else {}
    out = []
    for p in network.ports:
        for f in p.engine.flows():
            owner = owners.get((p.name, "tcp", f["flow"]))
            out.append({
                "proto": "tcp", "link": p.name, "flow": f["flow"], "state": f["state"].name,
                "guest": f"{f['guest'][0]}:{f['guest'][1]}", "remote": f"{f['remote'][0]}:{f['remote'][1]}",
                "direction": "in" if owner is not None else "out", "forward": owner,
                "bytes_from_guest": f["bytes_g2h"], "bytes_to_guest": f["bytes_h2g"],
                "rtt_ms": round(f["srtt_us"] / 1000, 3), "cwnd": f["cwnd"], "mss": f["mss"],
                "retransmits": f["rexmits"]})
        for f in p.stack.dgram_flows():
            owner = owners.get((p.name, "udp", f["flow"])) if f["proto"] == "udp" else None
            out.append({
                "proto": f["proto"], "link": p.name, "flow": f["flow"], "state": f["state"].upper(),
                "guest": f"{f['guest'][0]}:{f['guest'][1]}", "remote": f"{f['remote'][0]}:{f['remote'][1]}",
                "direction": "in" if owner is not None else "out", "forward": owner,
                "bytes_from_guest": f["bytes_g2h"], "bytes_to_guest": f["bytes_h2g"],
                "packets_from_guest": f["packets_g2h"], "packets_to_guest": f["packets_h2g"]})
    return out


def serve_api(path: str, network, ports: PublishedPorts, loop, *, proxy_source=None) -> HttpServer:
    """Start the control API at path on loop (which must not be running yet); returns the server."""
    api = ControlApi(network, ports, proxy_source=proxy_source, api_path=path)
    return HttpServer(path, api.router, loop=loop).start_sync()
