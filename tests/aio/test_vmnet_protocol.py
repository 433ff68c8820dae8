"""The vmnet protocol byte for byte (reference/vpnkit.md §2), and the server's handshake against
an independent client (tests/integration/relays.py), with the real address pool behind it:
version mismatch, the Disconnect reasons, UUID stickiness, timeouts, many clients at once."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
import time
import uuid as uuidlib

import pytest

from fastnet.aio import vmnet
from fastnet.aio.unixsock import SocketPathInUse
from fastnet.services.addressing import AddressPool
from fastnet.services.config import NetworkConfig
from tests.integration.relays import recv_exactly, vmnet_client_handshake

UUID_A = "d2b4c1a8-6d0e-4a43-9b1f-3c8a7e5f0a11"
UUID_B = "0f0e0d0c-0b0a-4908-8706-050403020100"
MAC = bytes.fromhex("025000000001")


# -- byte layouts ------------------------------------------------------------------------------

def test_init_layout():
    b = vmnet.pack_init()
    assert len(b) == vmnet.INIT_SIZE == 49
    assert b[:5] == b"VMN3T"
    assert b[5:9] == bytes([22, 0, 0, 0])          # version 22, little-endian
    assert b[9:] == b"0123456789012345678901234567890123456789"
    init = vmnet.unpack_init(b"VMN3T" + bytes([21, 0, 0, 0]) + b"x" * 40)
    assert (init.magic, init.version, init.commit) == (b"VMN3T", 21, b"x" * 40)


def test_command_layout_ethernet_and_preferred():
    b = vmnet.pack_command(vmnet.CMD_PREFERRED_IPV4, UUID_A, "192.168.65.3")
    assert len(b) == vmnet.COMMAND_SIZE == 41
    assert b[0] == 8
    assert b[1:37] == UUID_A.encode()
    assert b[37:41] == bytes([0x03, 0x41, 0xA8, 0xC0])  # u32 LE of the host-order address
    cmd = vmnet.unpack_command(b)
    assert cmd.command == 8 and cmd.uuid == UUID_A and cmd.preferred == ipaddress.IPv4Address("192.168.65.3")

    eth = bytes([1]) + UUID_A.upper().encode() + bytes(4)
    cmd = vmnet.unpack_command(eth)
    assert cmd.command == 1 and cmd.uuid == UUID_A and cmd.preferred is None  # case-insensitive


def test_command_nul_uuid_means_server_picks():
    cmd = vmnet.unpack_command(bytes([1]) + bytes(36) + bytes(4))
    assert cmd.uuid is None and cmd.raw_uuid == bytes(36)


@pytest.mark.parametrize("raw", [b"not-a-uuid".ljust(36, b"x"), UUID_A.replace("-", "").encode().ljust(36, b"0"),
                                 b"\xff" * 36])
def test_command_invalid_uuid(raw):
    with pytest.raises(vmnet.HandshakeError, match="Invalid UUID"):
        vmnet.unpack_command(bytes([1]) + raw + bytes(4))


def test_vif_layout():
    b = vmnet.pack_vif(1500, MAC)
    assert len(b) == vmnet.RESPONSE_SIZE == 258
    assert b[0] == 1
    assert b[1:3] == bytes([0xDC, 0x05])        # 1500 LE
    assert b[3:5] == bytes([0x0E, 0x06])        # 1550 = MTU + 50, LE
    assert b[5:11] == MAC
    assert b[11:] == bytes(247)
    assert vmnet.unpack_response(b) == vmnet.Vif(1500, 1550, MAC)


def test_disconnect_layout():
    reason = "Preferred IP address out of range."
    b = vmnet.pack_disconnect(reason)
    assert len(b) == 258
    assert b[0] == 2 and b[1] == len(reason)
    assert b[2:2 + len(reason)] == reason.encode()
    assert b[2 + len(reason):] == bytes(256 - len(reason))
    assert vmnet.unpack_response(b) == vmnet.Disconnect(reason)
    long = vmnet.pack_disconnect("x" * 400)
    assert len(long) == 258 and long[1] == 255   # the length is one byte


def test_layouts_agree_with_the_independent_client():
    # The relay's client packs with its own struct formats; both readings must agree.
    init = struct.pack("<5sI40s", b"VMN3T", 22, b"0123456789012345678901234567890123456789")
    assert init == vmnet.pack_init()
    ip = struct.unpack("!I", socket.inet_aton("10.0.0.1"))[0]
    assert struct.pack("<B36sI", 8, UUID_B.encode(), ip) == vmnet.pack_command(8, UUID_B, "10.0.0.1")


# -- the server ----------------------------------------------------------------------------------

class Server:
    def __init__(self, loop_thread, path, config=None, **kw):
        self.pool = AddressPool(config or NetworkConfig())
        self.attached: list[tuple[int, dict]] = []
        self.event = threading.Condition()
        self.lt = loop_thread
        self.srv = vmnet.VmnetServer(path, allocate=lambda u, p: self.pool.allocate(uuid=u, preferred=p),
                                     on_attach=self._on_attach, loop=loop_thread.loop, **kw)
        loop_thread.call(self.srv.start)

    def _on_attach(self, fd, **kw):
        with self.event:
            self.attached.append((fd, kw))
            self.event.notify_all()

    def wait_attached(self, n, timeout=5):
        with self.event:
            assert self.event.wait_for(lambda: len(self.attached) >= n, timeout), self.attached
        return self.attached

    def close(self):
        self.lt.call(self.srv.close)
        for fd, _ in self.attached:
            os.close(fd)


@pytest.fixture
def server(loop_thread, sock_dir):
    made = []

    def make(**kw):
        s = Server(loop_thread, os.path.join(sock_dir, f"vmnet{len(made)}.sock"), **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def connect(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def test_ethernet_gets_vif_and_is_attached(server):
    srv = server()
    with connect(srv.srv.path) as c:
        res = vmnet_client_handshake(c, uuid=UUID_A)
        assert res["init"] == {"magic": "VMN3T", "version": 22, "commit": "0123456789012345678901234567890123456789"}
        assert res["type"] == "vif" and res["padding_zero"]
        assert (res["mtu"], res["max_packet_size"], res["mac"]) == (1500, 1550, "02:50:00:00:00:01")
        (fd, kw), = srv.wait_attached(1)
        assert kw["uuid"] == UUID_A
        assert kw["lease"].ip == ipaddress.IPv4Address("192.168.65.3") and kw["lease"].mac == MAC
        assert kw["info"]["transport"] == "vmnet" and kw["info"]["command"] == "Ethernet"
        assert not os.get_blocking(fd)
        # The fd is the connection: frames flow both ways with the 2-byte LE prefix.
        frame = bytes(60)
        c.sendall(struct.pack("<H", len(frame)) + frame)
        deadline = time.monotonic() + 5
        got = b""
        while len(got) < 62 and time.monotonic() < deadline:
            try:
                got += os.read(fd, 100)
            except BlockingIOError:
                time.sleep(0.01)
        assert got == struct.pack("<H", 60) + frame


def test_mtu_is_what_the_network_says(server):
    srv = server(mtu=4000)
    with connect(srv.srv.path) as c:
        res = vmnet_client_handshake(c, uuid=UUID_A)
        assert (res["mtu"], res["max_packet_size"]) == (4000, 4050)


def test_frames_sent_right_after_the_command_are_left_for_the_link(server):
    # The handshake reads exactly its bytes: a frame pipelined behind the Command must reach
    # the link, not vanish into a handshake buffer.
    srv = server()
    with connect(srv.srv.path) as c:
        frame = b"\x02" * 6 + b"\x02\x50\0\0\0\x01" + b"\x08\x00" + bytes(46)
        c.sendall(struct.pack("<5sI40s", b"VMN3T", 22, b"c" * 40))
        c.sendall(vmnet.pack_command(1, UUID_A) + struct.pack("<H", len(frame)) + frame)
        assert recv_exactly(c, 49)[:5] == b"VMN3T"
        assert recv_exactly(c, 258)[0] == 1
        (fd, _), = srv.wait_attached(1)
        with socket.socket(fileno=os.dup(fd)) as link:
            link.settimeout(5)
            assert recv_exactly(link, 2 + len(frame)) == struct.pack("<H", 60) + frame


def test_nul_uuid_gets_a_random_one(server):
    srv = server()
    with connect(srv.srv.path) as c1, connect(srv.srv.path) as c2:
        r1 = vmnet_client_handshake(c1)
        r2 = vmnet_client_handshake(c2)
        assert r1["type"] == r2["type"] == "vif"
        assert r1["mac"] != r2["mac"]   # two random UUIDs: two VMs
        attached = srv.wait_attached(2)
        uuids = {kw["uuid"] for _, kw in attached}
        assert len(uuids) == 2
        for u in uuids:
            assert str(uuidlib.UUID(u)) == u
        assert all(kw["info"]["uuid_chosen_by_server"] for _, kw in attached)


def test_bad_version_gets_our_init_then_close(server):
    srv = server()
    with connect(srv.srv.path) as c:
        c.sendall(struct.pack("<5sI40s", b"VMN3T", 21, b"c" * 40))
        init = recv_exactly(c, 49)
        assert init[:5] == b"VMN3T" and struct.unpack_from("<I", init, 5)[0] == 22
        assert c.recv(1) == b""   # closed: no Command is read
    assert srv.srv.stats["version_mismatch"] == 1
    assert srv.attached == []


def test_bad_version_through_the_client(server):
    srv = server()
    with connect(srv.srv.path) as c:
        res = vmnet_client_handshake(c, uuid=UUID_A, version=2)
        assert res["init"]["version"] == 22 and res["type"] == "closed"


@pytest.mark.parametrize("preferred, reason", [
    ("10.0.0.5", "Preferred IP address out of range."),
    ("192.168.65.1", "Preferred IP address out of range."),   # the gateway: not a guest address
    ("192.168.65.255", "Preferred IP address out of range."),
])
def test_preferred_ip_out_of_range(server, preferred, reason):
    srv = server()
    with connect(srv.srv.path) as c:
        res = vmnet_client_handshake(c, uuid=UUID_A, preferred=preferred)
        assert res == {**res, "type": "disconnect", "reason": reason, "padding_zero": True}
        assert c.recv(1) == b""
    assert srv.attached == []


def test_preferred_ip_taken(server):
    srv = server()
    with connect(srv.srv.path) as c1, connect(srv.srv.path) as c2:
        assert vmnet_client_handshake(c1, uuid=UUID_A, preferred="192.168.65.7")["type"] == "vif"
        res = vmnet_client_handshake(c2, uuid=UUID_B, preferred="192.168.65.7")
        assert res["type"] == "disconnect"
        assert res["reason"] == "Preferred IP address 192.168.65.7 already used."


def test_preferred_ip_is_honoured(server):
    srv = server()
    with connect(srv.srv.path) as c:
        assert vmnet_client_handshake(c, uuid=UUID_A, preferred="192.168.65.42")["type"] == "vif"
        (_, kw), = srv.wait_attached(1)
        assert kw["lease"].ip == ipaddress.IPv4Address("192.168.65.42")
        assert kw["info"]["preferred"] == "192.168.65.42"


def test_same_uuid_twice_gets_the_same_ip_and_mac(server):
    srv = server()
    with connect(srv.srv.path) as c1:
        r1 = vmnet_client_handshake(c1, uuid=UUID_A)
        with connect(srv.srv.path) as other:
            assert vmnet_client_handshake(other, uuid=UUID_B)["mac"] != r1["mac"]
        # A second connection while the first is still up (a reconnect racing the old
        # connection's teardown), then a third after the first is gone.
        with connect(srv.srv.path) as c2:
            r2 = vmnet_client_handshake(c2, uuid=UUID_A)
        c1.close()
        with connect(srv.srv.path) as c3:
            r3 = vmnet_client_handshake(c3, uuid=UUID_A.upper())
    assert r1["mac"] == r2["mac"] == r3["mac"]
    leases = [kw["lease"] for _, kw in srv.wait_attached(4) if kw["uuid"] == UUID_A]
    assert len(leases) == 3 and len({(le.ip, le.mac) for le in leases}) == 1


def test_same_uuid_with_a_different_preferred_ip(server):
    srv = server()
    with connect(srv.srv.path) as c1, connect(srv.srv.path) as c2:
        assert vmnet_client_handshake(c1, uuid=UUID_A, preferred="192.168.65.10")["type"] == "vif"
        res = vmnet_client_handshake(c2, uuid=UUID_A, preferred="192.168.65.11")
        assert res["reason"] == "UUID already assigned to a different IP than the IP requested by the client"


@pytest.mark.parametrize("command, reason", [(6, "Unsupported command Bind_ipv4"), (2, "Unsupported command 2"),
                                             (0, "Unsupported command 0"), (255, "Unsupported command 255")])
def test_unsupported_command(server, command, reason):
    srv = server()
    with connect(srv.srv.path) as c:
        res = vmnet_client_handshake(c, uuid=UUID_A, command=command)
        assert (res["type"], res["reason"]) == ("disconnect", reason)
    assert srv.attached == []


def test_invalid_uuid_is_a_disconnect(server):
    srv = server()
    with connect(srv.srv.path) as c:
        res = vmnet_client_handshake(c, raw_uuid=b"z" * 36)
        assert res["type"] == "disconnect" and res["reason"].startswith("Invalid UUID")


def test_pool_exhaustion_reason(server):
    cfg = NetworkConfig(first_guest=ipaddress.IPv4Address("192.168.65.3"),
                        last_guest=ipaddress.IPv4Address("192.168.65.3"))
    srv = server(config=cfg)
    with connect(srv.srv.path) as c1, connect(srv.srv.path) as c2:
        assert vmnet_client_handshake(c1, uuid=UUID_A)["type"] == "vif"
        assert vmnet_client_handshake(c2, uuid=UUID_B)["reason"] == "No IP addresses available."


def test_silent_client_times_out_without_holding_up_others(server):
    srv = server(handshake_timeout=0.5)
    t0 = time.monotonic()
    with connect(srv.srv.path) as silent, connect(srv.srv.path) as half:
        half.sendall(vmnet.pack_init()[:20])   # stalls mid-Init
        with connect(srv.srv.path) as c:
            assert vmnet_client_handshake(c, uuid=UUID_A)["type"] == "vif"
        assert time.monotonic() - t0 < 0.5     # served while the other two stall
        silent.settimeout(5)
        half.settimeout(5)
        assert silent.recv(1) == b""
        assert half.recv(100) == b""
        assert 0.4 < time.monotonic() - t0 < 3
    assert srv.srv.stats["timeouts"] == 2
    assert len(srv.attached) == 1


def test_byte_at_a_time_client(server):
    srv = server()
    with connect(srv.srv.path) as c:
        for b in struct.pack("<5sI40s", b"VMN3T", 22, b"c" * 40):
            c.send(bytes([b]))
        assert recv_exactly(c, 49)[5] == 22
        for b in vmnet.pack_command(1, UUID_A):
            c.send(bytes([b]))
        assert vmnet.unpack_response(recv_exactly(c, 258)).mac == MAC


def test_many_concurrent_clients(server):
    srv = server()
    n = 40
    results: list = [None] * n

    def one(i):
        with connect(srv.srv.path) as c:
            results[i] = vmnet_client_handshake(c, uuid=str(uuidlib.UUID(int=i + 1)))
            srv.wait_attached(n, timeout=10)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert all(r and r["type"] == "vif" for r in results)
    assert len({r["mac"] for r in results}) == n
    assert len({kw["lease"].ip for _, kw in srv.attached}) == n


def test_allocator_error_text_is_the_reason(loop_thread, sock_dir):
    def allocate(uuid, preferred):
        raise RuntimeError("custom refusal")

    srv = vmnet.VmnetServer(os.path.join(sock_dir, "v.sock"), allocate=allocate, on_attach=lambda fd, **kw: None,
                            loop=loop_thread.loop)
    loop_thread.call(srv.start)
    try:
        with connect(srv.path) as c:
            assert vmnet_client_handshake(c, uuid=UUID_A)["reason"] == "custom refusal"
    finally:
        loop_thread.call(srv.close)


def test_path_in_use_and_stale(loop_thread, sock_dir):
    path = os.path.join(sock_dir, "v.sock")
    mk = lambda: vmnet.VmnetServer(path, allocate=lambda u, p: None, on_attach=lambda fd, **kw: None,  # noqa: E731
                                   loop=loop_thread.loop)
    first = mk()
    loop_thread.call(first.start)
    with pytest.raises(SocketPathInUse, match="socket path in use"):
        loop_thread.call(mk().start)
    # A server that died without cleaning up leaves a socket file nobody serves.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    loop_thread.call(first.close)
    stale.bind(path)
    stale.close()
    assert os.path.exists(path)
    second = mk()
    loop_thread.call(second.start)
    with connect(path) as c:
        c.sendall(vmnet.pack_init(version=1))
        assert recv_exactly(c, 49)[:5] == b"VMN3T"
    loop_thread.call(second.close)
    assert not os.path.exists(path)   # close removes its own socket file


def test_stalled_handshakes_are_bounded(server):
    srv = server(max_handshakes=2, handshake_timeout=5)
    with connect(srv.srv.path) as s1, connect(srv.srv.path) as s2:
        deadline = time.monotonic() + 5
        while srv.srv.handshakes_in_progress < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with connect(srv.srv.path) as s3:
            assert s3.recv(1) == b""    # dropped at once: two stalled clients are the limit
        assert srv.srv.stats["overflow"] == 1
    # Once those are gone, clients are served again.
    deadline = time.monotonic() + 5
    while srv.srv.handshakes_in_progress and time.monotonic() < deadline:
        time.sleep(0.01)
    with connect(srv.srv.path) as c:
        assert vmnet_client_handshake(c, uuid=UUID_A)["type"] == "vif"
