"""The control API over its unix socket, against a VirtualNetwork running on its own loop
(no guest is needed for the shapes): gvproxy's routes byte for byte as
reference/gvisor-tap-vsock.md §3 gives them, fastnet's /v1 routes, Prometheus text, and the
answers to malformed requests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from types import SimpleNamespace

import pytest

from fastnet.api.client import ApiClient, ApiClientError
from fastnet.api.http import HttpServer, SocketPathInUse
from fastnet.api.routes import ControlApi
from fastnet.services.ports import PublishedPorts
from fastnet.services.proxyconf import ProxyConfigSource
from tests.integration.harness import NetworkRunner

GUEST = "192.168.65.3"


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def control():
    d = tempfile.mkdtemp(prefix="fnapi")   # sun_path is 108 bytes; pytest's tmp_path may be longer
    path = os.path.join(d, "api.sock")
    with NetworkRunner() as runner:
        ports = runner.call(lambda: PublishedPorts(runner.net, default_guest=GUEST))
        source = ProxyConfigSource(environ={}, system=False)
        api = runner.call(lambda: ControlApi(runner.net, ports, proxy_source=source, api_path=path))
        server = HttpServer(path, api.router, loop=runner.loop)
        asyncio.run_coroutine_threadsafe(server.start(), runner.loop).result(10)
        ns = SimpleNamespace(runner=runner, ports=ports, api=api, path=path, dir=d, client=ApiClient(path),
                             server=server)
        try:
            yield ns
        finally:
            runner.call(server.close)
            runner.call(ports.close)
    shutil.rmtree(d, ignore_errors=True)


def req(c, method, route, body=None, raw: bytes | None = None):
    """(status, content type, body bytes) for a JSON body or raw bytes."""
    if raw is None:
        return c.client.request(method, route, body)
    return raw_request(c.path, f"{method} {route} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                       + raw)


def raw_request(path: str, data: bytes):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(data)
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += s.recv(65536)
    s.close()
    status = int(head.split()[1])
    ctype = re.search(rb"(?i)content-type: ([^\r\n]*)", head)
    return status, ctype.group(1).decode() if ctype else "", body


# -- the socket --------------------------------------------------------------------------------

def test_socket_is_owner_only_and_a_live_one_is_not_taken_over(control):
    assert stat.S_IMODE(os.stat(control.path).st_mode) == 0o600
    other = HttpServer(control.path, control.api.router, loop=control.runner.loop)
    with pytest.raises(SocketPathInUse):
        other.bind()


def test_keep_alive_and_pipelining(control):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(control.path)
    s.sendall(b"GET /v1/ports HTTP/1.1\r\nHost: x\r\n\r\nGET /services/forwarder/all HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while data.count(b"HTTP/1.1 200 OK") < 2 or not data.endswith(b"[]\n"):
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    s.close()


# -- gvproxy's routes ------------------------------------------------------------------------------

def test_gvproxy_forwarder_routes(control):
    status, ctype, body = req(control, "GET", "/services/forwarder/all")
    assert (status, ctype, body) == (200, "application/json", b"[]\n")
    a, b = free_port(), free_port()
    status, _, body = req(control, "POST", "/services/forwarder/expose",
                          {"local": f"127.0.0.1:{a}", "remote": f"{GUEST}:22", "protocol": "tcp"})
    assert (status, body) == (200, b"")
    # protocol defaults to tcp; an empty remote host means the default guest
    assert req(control, "POST", "/services/forwarder/expose", {"local": f"127.0.0.1:{b}", "remote": ":80"})[0] == 200
    assert req(control, "POST", "/services/forwarder/expose",
               {"local": f"127.0.0.1:{a}", "remote": f"{GUEST}:53", "protocol": "udp"})[0] == 200
    status, _, body = req(control, "GET", "/services/forwarder/all")
    expected = sorted([{"local": f"127.0.0.1:{a}", "remote": f"{GUEST}:22", "protocol": "tcp"},
                       {"local": f"127.0.0.1:{b}", "remote": f"{GUEST}:80", "protocol": "tcp"},
                       {"local": f"127.0.0.1:{a}", "remote": f"{GUEST}:53", "protocol": "udp"}],
                      key=lambda d: (d["local"], d["protocol"]))
    assert body == (json.dumps(expected, separators=(",", ":")) + "\n").encode()
    # gvproxy's errors: plain text, a newline, Go's headers.
    status, ctype, body = req(control, "POST", "/services/forwarder/expose",
                              {"local": f"127.0.0.1:{a}", "remote": f"{GUEST}:23"})
    assert (status, ctype, body) == (500, "text/plain; charset=utf-8",
                                     f"proxy already running for tcp on 127.0.0.1:{a}\n".encode())
    assert req(control, "GET", "/services/forwarder/expose") == (400, "text/plain; charset=utf-8", b"post only\n")
    assert req(control, "GET", "/services/forwarder/unexpose")[2] == b"post only\n"
    status, ctype, body = req(control, "POST", "/services/forwarder/expose", raw=b"{not json")
    assert status == 400 and ctype.startswith("text/plain") and body.endswith(b"\n")
    assert req(control, "POST", "/services/forwarder/expose", {"local": "127.0.0.1:1", "remote": "nohost"})[0] == 400
    assert req(control, "POST", "/services/forwarder/expose",
               {"local": "127.0.0.1:1", "remote": f"{GUEST}:1", "protocol": "sctp"})[:2] == (500, "text/plain; charset=utf-8")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        status, _, body = req(control, "POST", "/services/forwarder/expose",
                              {"local": f"127.0.0.1:{held.getsockname()[1]}", "remote": f"{GUEST}:1"})
        assert status == 500 and b"port is already allocated" in body
    # unexpose: 200, the listener gone; a second time "proxy not found".
    assert req(control, "POST", "/services/forwarder/unexpose", {"local": f"127.0.0.1:{a}", "protocol": "tcp"}) == \
        (200, "", b"")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", a), timeout=5)
    assert req(control, "POST", "/services/forwarder/unexpose", {"local": f"127.0.0.1:{a}"}) == \
        (500, "text/plain; charset=utf-8", b"proxy not found\n")
    assert req(control, "POST", "/services/forwarder/unexpose", {"local": f"127.0.0.1:{a}", "protocol": "udp"})[0] == 200


def test_gvproxy_unix_forwards(control):
    path = os.path.join(control.dir, "fwd.sock")
    assert req(control, "POST", "/services/forwarder/expose",
               {"local": path, "remote": f"tcp://{GUEST}:22", "protocol": "unix"})[0] == 200
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    listed = json.loads(req(control, "GET", "/services/forwarder/all")[2])
    assert listed == [{"local": path, "remote": f"tcp://{GUEST}:22", "protocol": "unix"}]
    status, _, body = req(control, "POST", "/services/forwarder/expose",
                          {"local": path + "2", "remote": f"ssh-tunnel://core@{GUEST}/run/x.sock?key=k",
                           "protocol": "unix"})
    assert (status, body) == (500, b"remote protocol for unix forwarder is not implemented: ssh-tunnel\n")
    assert req(control, "POST", "/services/forwarder/unexpose", {"local": path, "protocol": "unix"})[0] == 200
    assert not os.path.exists(path)


def test_gvproxy_leases_dns_and_stats(control):
    control.runner.call(lambda: control.runner.net.pool.allocate(mac=bytes.fromhex("5a94efe40cee")))
    for route in ("/services/dhcp/leases", "/leases"):
        status, _, body = req(control, "GET", route)
        assert status == 200 and json.loads(body) == {"192.168.65.1": "f6:16:36:bc:f9:c6",
                                                      "192.168.65.3": "5a:94:ef:e4:0c:ee"}
    zones = json.loads(req(control, "GET", "/services/dns/all")[2])
    assert {"Name": "docker.internal.", "Records": [{"Name": "host", "IP": "192.168.65.2"},
                                                    {"Name": "gateway", "IP": "192.168.65.1"}], "DefaultIP": ""} in zones
    assert all(set(z) == {"Name", "Records", "DefaultIP"} for z in zones)
    add = {"Name": "dynamic.internal.", "Records": [{"Name": "test", "IP": "192.168.65.9"}]}
    assert req(control, "POST", "/services/dns/add", add) == (200, "", b"")
    # A second add of the zone puts its records first (gvproxy's addZone).
    add2 = {"Name": "dynamic.internal.", "Records": [{"Name": "new", "IP": "192.168.65.10"},
                                                     {"Name": "re", "IP": "192.168.65.11", "Regexp": "^re.*"}]}
    assert req(control, "POST", "/services/dns/add", add2)[0] == 200
    zones = json.loads(req(control, "GET", "/services/dns/all")[2])
    dyn = next(z for z in zones if z["Name"] == "dynamic.internal.")
    assert dyn == {"Name": "dynamic.internal.", "Records": [{"Name": "new", "IP": "192.168.65.10"},
                                                           {"Name": "re", "IP": "192.168.65.11", "Regexp": "^re.*"},
                                                           {"Name": "test", "IP": "192.168.65.9"}], "DefaultIP": ""}
    assert req(control, "GET", "/services/dns/add")[2] == b"post only\n"
    assert req(control, "POST", "/services/dns/add", raw=b"[")[0] == 400
    stats = json.loads(req(control, "GET", "/stats")[2])
    for key in ("BytesSent", "BytesReceived", "DroppedPackets", "NICs", "ICMP", "IGMP", "IP", "ARP", "TCP", "UDP"):
        assert key in stats
    assert {"ActiveConnectionOpenings", "CurrentEstablished", "Retransmits", "ResetsSent"} <= set(stats["TCP"])


# -- fastnet's routes ------------------------------------------------------------------------------

def error_of(resp) -> dict:
    status, ctype, body = resp
    assert ctype == "application/json", resp
    d = json.loads(body)
    assert d["status"] == status and d["error"]
    return d


def test_malformed_requests_get_a_json_400_naming_the_problem(control):
    status, ctype, body = raw_request(control.path, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and "malformed HTTP request" in json.loads(body)["error"]
    resp = req(control, "POST", "/v1/ports", raw=b'{"spec": ')
    assert resp[0] == 400 and "not valid JSON" in error_of(resp)["error"]
    resp = req(control, "POST", "/v1/ports", raw=b"[1]")
    assert resp[0] == 400 and "JSON object" in error_of(resp)["error"]
    resp = req(control, "POST", "/v1/ports", {"host_port": "80", "guest_port": 80})
    assert resp[0] == 400 and "host_port must be an integer" in error_of(resp)["error"]
    resp = req(control, "POST", "/v1/ports", {"guest_port": 80, "colour": "blue"})
    assert resp[0] == 400 and "colour" in error_of(resp)["error"]
    resp = req(control, "POST", "/v1/ports", {"spec": "x:y:z"})
    assert resp[0] == 400 and "x:y:z" in error_of(resp)["error"]
    resp = req(control, "POST", "/v1/ports", {"guest_port": 0})
    assert resp[0] == 400 and "guest port" in error_of(resp)["error"]
    resp = req(control, "GET", "/v1/nothing")
    assert resp[0] == 404 and "no such route" in error_of(resp)["error"]
    resp = req(control, "PUT", "/v1/ports")
    assert resp[0] == 405 and "GET, POST" in error_of(resp)["error"]
    resp = req(control, "GET", "/v1/ports/abc")
    assert resp[0] == 400 and "number" in error_of(resp)["error"]
    resp = req(control, "DELETE", "/v1/ports/99")
    assert resp[0] == 404


def test_ports_lifecycle(control):
    c = control.client
    made = c.call("POST", "/v1/ports", {"spec": f"0:{GUEST}:80"})
    assert made["id"] == 1 and made["host_port"] and made["requested_port"] == 0 and made["origin"] == "api"
    assert f"127.0.0.1:{made['host_port']}" in made["listening"]
    # The very same forward again: 200 with it; another target on that port: 409.
    status, _, body = req(control, "POST", "/v1/ports", {"spec": f"{made['host_port']}:{GUEST}:80"})
    assert status == 200 and json.loads(body)["id"] == 1
    resp = req(control, "POST", "/v1/ports", {"spec": f"{made['host_port']}:{GUEST}:81"})
    assert resp[0] == 409 and "port is already allocated" in error_of(resp)["error"]
    udp = c.call("POST", "/v1/ports", {"proto": "udp", "host_addr": "127.0.0.1", "host_port": 0, "guest_addr": GUEST,
                                       "guest_port": 53})
    assert udp["listening"] == [f"127.0.0.1:{udp['host_port']}"] and udp["datagrams"] == 0
    assert [p["id"] for p in c.call("GET", "/v1/ports")] == [1, 2]
    assert c.call("GET", "/v1/ports/2")["proto"] == "udp"
    gone = c.call("POST", "/v1/ports/remove", {"spec": str(udp["host_port"]), "proto": "udp"})
    assert gone["id"] == 2
    with pytest.raises(ApiClientError) as e:
        c.call("POST", "/v1/ports/remove", {"spec": str(udp["host_port"]), "proto": "udp"})
    assert e.value.status == 404
    assert c.call("DELETE", "/v1/ports/1?close_connections=1")["id"] == 1
    assert c.call("GET", "/v1/ports") == []
    resp = req(control, "POST", "/v1/ports", {"spec": f"192.0.2.1:0:{GUEST}:80"})
    assert resp[0] == 400 and "cannot assign requested address" in error_of(resp)["error"]


def test_flows_stats_and_metrics(control):
    c = control.client
    assert c.call("GET", "/v1/flows") == []
    c.call("POST", "/v1/ports", {"spec": f"0:{GUEST}:80"})
    st = c.call("GET", "/v1/stats")
    assert st["version"] and st["network"]["ports"] == [] and len(st["published"]) == 1
    status, ctype, body = req(control, "GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "fastnet_published_ports 1\n" in text
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    info = c.call("GET", "/v1/info")
    assert info["gateway"] == "192.168.65.1" and info["api"] == control.path and info["default_guest"] == GUEST


def test_pcap_on_a_link(control):
    a, b = socket.socketpair()
    try:
        control.runner.call(lambda: control.runner.net.attach(a.detach(), "qemu", framing=4, name="vm1"))
        where = os.path.join(control.dir, "cap.pcap")
        started = control.client.call("POST", "/v1/pcap/start", {"path": where})
        assert started == [{"link": "vm1", "path": where}]
        assert control.client.call("GET", "/v1/pcap")[0]["link"] == "vm1"
        frame = bytes.fromhex("ffffffffffff02500000000108060001080006040001025000000001c0a84103000000000000c0a84101")
        b.sendall(len(frame).to_bytes(4, "big") + frame)
        deadline = time.monotonic() + 5
        while control.client.call("GET", "/v1/pcap")[0]["frames"] < 2:   # the ARP request and our reply
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stopped = control.client.call("POST", "/v1/pcap/stop", {})
        assert stopped[0]["path"] == where and stopped[0]["frames"] >= 2
        with open(where, "rb") as f:
            assert f.read(4) in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        resp = req(control, "POST", "/v1/pcap/start", {"path": where, "link": "nope"})
        assert resp[0] == 404
        resp = req(control, "POST", "/v1/pcap/start", {})
        assert resp[0] == 400 and "path" in error_of(resp)["error"]
    finally:
        b.close()


def test_proxy_settings_through_the_api(control):
    c = control.client
    got = c.call("GET", "/v1/proxy")
    assert "http" not in got["current"]
    set_ = c.call("POST", "/v1/proxy", {"http": "http://user:secret@proxy.example:3128", "exclude": "localhost"})
    assert set_["current"]["http"] == "http://proxy.example:3128"   # credentials are not shown
    assert "secret" not in json.dumps(c.call("GET", "/v1/proxy"))    # not in what was posted either
    assert c.call("GET", "/v1/proxy")["current"]["exclude"] == "localhost"
    resp = req(control, "POST", "/v1/proxy", {"bogus": 1})
    assert resp[0] == 400 and "bogus" in error_of(resp)["error"]
    resp = req(control, "POST", "/v1/proxy", {"transparent_http_ports": "x"})
    assert resp[0] == 400 and "transparent_http_ports" in error_of(resp)["error"]


def test_dns_zones_and_records(control):
    c = control.client
    zone = c.call("POST", "/v1/dns/zones", {"name": "lab.internal.", "records": [{"name": "a", "ip": "192.168.65.20"}]})
    assert zone["name"] == "lab.internal."
    assert any(z["name"] == "lab.internal." for z in c.call("GET", "/v1/dns/zones"))
    c.call("POST", "/v1/dns/records", {"name": "b.lab.internal", "ip": "192.168.65.21"})
    assert c.call("DELETE", "/v1/dns/records", {"name": "b.lab.internal"})["removed"] == 1
    assert c.call("DELETE", "/v1/dns/zones/lab.internal.")["removed"] == "lab.internal."
    resp = req(control, "DELETE", "/v1/dns/zones/lab.internal.")
    assert resp[0] == 404
    resp = req(control, "POST", "/v1/dns/records", {"name": "x"})
    assert resp[0] == 400 and "ip" in error_of(resp)["error"]
