"""The DHCP server against messages crafted with scapy: every exchange of RFC 2131 §3 and §4.3,
every option value, the reply addressing of §4.1, and the ways a message can be malformed.

Options are read back with a walker written here (not the server's parser), headers and
checksums with scapy."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from fastnet.services import dhcp as dhcp_mod
from fastnet.services.addressing import AddressError, AddressPool
from fastnet.services.config import NetworkConfig, StaticLease, format_mac
from fastnet.services.dhcp import DhcpServer, encode_domain_search

IP4 = ipaddress.IPv4Address
GW_MAC = "f6:16:36:bc:f9:c6"
BCAST = "ff:ff:ff:ff:ff:ff"
MAC1 = "02:00:00:00:00:0a"
MAC2 = "02:00:00:00:00:0b"
MAC3 = "02:00:00:00:00:0c"

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def message(mtype: int | None, mac: str = MAC1, *, options=(), src="0.0.0.0", dst="255.255.255.255",
            eth_dst=BCAST, ciaddr="0.0.0.0", giaddr="0.0.0.0", flags=0, xid=0x3903F326,
            op=1, htype=1, hlen=6, vlan=None) -> bytes:
    """A client's DHCP frame; ``options`` are scapy DHCP options after the message type."""
    opts = ([("message-type", mtype)] if mtype is not None else []) + list(options) + ["end"]
    eth = Ether(src=mac, dst=eth_dst)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    pkt = (eth / IP(src=src, dst=dst) / UDP(sport=68, dport=67)
           / BOOTP(op=op, htype=htype, hlen=hlen, xid=xid, flags=flags, ciaddr=ciaddr, giaddr=giaddr,
                   chaddr=mac_bytes(mac)) / DHCP(options=opts))
    return bytes(pkt)


def walk_options(raw: bytes) -> list[tuple[int, bytes]]:
    """(code, value) in order up to END; every instance separately (RFC 3396 splits)."""
    out, i = [], 0
    while i < len(raw):
        code = raw[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            break
        out.append((code, raw[i + 2:i + 2 + raw[i + 1]]))
        i += 2 + raw[i + 1]
    return out


class Reply:
    """One reply frame taken apart: the scapy packet and the options by code."""

    def __init__(self, frame: bytes):
        self.frame = frame
        self.pkt = Ether(frame)
        bootp = self.pkt[BOOTP]
        raw = bytes(bootp)
        assert raw[236:240] == b"\x63\x82\x53\x63"
        self.bootp = bootp
        self.order = walk_options(raw[240:])
        self.opts: dict[int, bytes] = {}
        for code, value in self.order:
            self.opts[code] = self.opts.get(code, b"") + value
        self.type = self.opts[53][0]

    def ip(self, code: int) -> str:
        return str(IP4(self.opts[code]))

    def u32(self, code: int) -> int:
        return struct.unpack("!I", self.opts[code])[0]

    @property
    def codes(self) -> list[int]:
        return [c for c, _ in self.order]


@pytest.fixture
def clock():
    return Clock()


def server(clock=None, **config) -> DhcpServer:
    cfg = NetworkConfig(**config)
    return DhcpServer(cfg, AddressPool(cfg), clock=clock or Clock())


@pytest.fixture
def srv(clock):
    return server(clock, search=["example.com", "corp.example.com"], domain="localdomain")


def one(srv: DhcpServer, frame: bytes, **kw) -> Reply:
    replies = srv.handle(frame, **kw)
    assert len(replies) == 1, srv.stats
    return Reply(replies[0])


def none(srv: DhcpServer, frame: bytes, **kw) -> None:
    assert srv.handle(frame, **kw) == []


def dora(srv: DhcpServer, mac: str = MAC1, *, uuid=None, hostname=None, client_id=None) -> Reply:
    extra = ([("hostname", hostname)] if hostname else []) + ([("client_id", client_id)] if client_id else [])
    offer = one(srv, message(DISCOVER, mac, options=extra), uuid=uuid)
    assert offer.type == OFFER
    ip = offer.bootp.yiaddr
    ack = one(srv, message(REQUEST, mac, options=[("server_id", offer.ip(54)), ("requested_addr", ip)] + extra),
              uuid=uuid)
    assert ack.type == ACK, ack.opts.get(56)
    return ack


def release(srv: DhcpServer, mac: str, ip: str, **options) -> None:
    none(srv, message(RELEASE, mac, src=ip, dst="192.168.65.1", eth_dst=GW_MAC, ciaddr=ip,
                      options=[("server_id", "192.168.65.1")] + list(options.items())))


def checksums_valid(frame: bytes) -> bool:
    pkt = Ether(frame)
    again = pkt.copy()
    del again[IP].chksum
    del again[UDP].chksum
    again = Ether(bytes(again))
    return again[IP].chksum == pkt[IP].chksum and again[UDP].chksum == pkt[UDP].chksum


# -- the exchange -------------------------------------------------------------------------------

def test_dora_every_option_value(srv, clock):
    offer = one(srv, message(DISCOVER, options=[("hostname", "vm1")]))
    assert offer.type == OFFER
    assert offer.bootp.op == 2 and offer.bootp.xid == 0x3903F326
    assert offer.bootp.yiaddr == "192.168.65.3"          # first_guest
    assert offer.bootp.ciaddr == "0.0.0.0" and offer.bootp.siaddr == "0.0.0.0"
    assert offer.bootp.chaddr[:6] == mac_bytes(MAC1)
    assert offer.ip(54) == "192.168.65.1"
    assert offer.ip(1) == "255.255.255.0"
    assert offer.ip(3) == "192.168.65.1"
    assert offer.ip(6) == "192.168.65.1"                         # dns_server defaults to the gateway
    assert offer.ip(28) == "192.168.65.255"
    assert offer.opts[15] == b"localdomain"
    assert offer.opts[119] == b"\x07example\x03com\x00\x04corp\xc0\x00"
    assert struct.unpack("!H", offer.opts[26])[0] == 1500
    assert offer.u32(51) == 86400
    assert offer.u32(58) == 43200 and offer.u32(59) == 75600    # RFC 2131 §4.4.5: 0.5, 0.875
    assert set(offer.opts) == {53, 54, 1, 3, 6, 28, 15, 119, 26, 51, 58, 59}
    assert srv.leases()[0]["state"] == "offered"

    ack = one(srv, message(REQUEST, options=[("server_id", "192.168.65.1"), ("requested_addr", "192.168.65.3"),
                                            ("hostname", "vm1")]))
    assert ack.type == ACK
    assert ack.bootp.yiaddr == "192.168.65.3" and ack.bootp.ciaddr == "0.0.0.0"
    assert {c: v for c, v in ack.opts.items() if c != 53} == {c: v for c, v in offer.opts.items() if c != 53}
    clock.now += 100
    assert srv.leases() == [{"ip": "192.168.65.3", "mac": MAC1, "hostname": "vm1", "uuid": None,
                             "client_id": None, "state": "bound", "expires_in": 86300}]
    assert srv.stats["discover"] == 1 and srv.stats["offer"] == 1
    assert srv.stats["request"] == 1 and srv.stats["ack"] == 1 and srv.stats["malformed"] == 0
    clock.now += 86400
    assert srv.leases()[0]["state"] == "expired"


def test_reply_frame_is_well_formed(srv):
    offer = one(srv, message(DISCOVER))
    assert offer.pkt.src == GW_MAC
    assert offer.pkt[IP].src == "192.168.65.1" and offer.pkt[IP].ttl == 64
    assert offer.pkt[UDP].sport == 67 and offer.pkt[UDP].dport == 68
    assert checksums_valid(offer.frame)
    dhcp = bytes(offer.pkt[UDP].payload)
    assert len(dhcp) >= 300                                      # RFC 1542 §2.1
    end = 240 + sum(2 + len(v) for _, v in offer.order)
    assert dhcp[end] == 255 and not any(dhcp[end + 1:])          # END, then padding


def test_options_follow_the_parameter_request_list(srv):
    offer = one(srv, message(DISCOVER, options=[("param_req_list", [15, 6, 119, 3, 1, 99])]))
    # Message type and server id first, lease times, then the client's order, then the rest.
    assert offer.codes == [53, 54, 51, 58, 59, 15, 6, 119, 3, 1, 28, 26]


def test_essentials_survive_a_small_maximum_message_size():
    long_search = [f"d{i:02d}.{'x' * 50}{i:02d}.example" for i in range(12)]
    srv = server(search=long_search)
    offer = one(srv, message(DISCOVER, options=[("max_dhcp_size", 576)]))
    assert {1, 3, 6, 51, 54} <= set(offer.opts)
    assert 119 not in offer.opts                               # would not fit in 576 bytes
    assert len(offer.pkt[IP]) <= 576
    big = one(srv, message(DISCOVER, options=[("max_dhcp_size", 1500)]))
    value = encode_domain_search(long_search)
    assert len(value) > 255
    # RFC 3396: one long option travels as consecutive instances, concatenated by the client.
    parts = [v for c, v in big.order if c == 119]
    assert [len(v) for v in parts[:-1]] == [255] * (len(value) // 255)
    assert b"".join(parts) == value


def test_client_identifier_is_echoed(srv):
    cid = b"\xff\x00\x00\x00\x01\x00\x04" + bytes(range(16))
    ack = dora(srv, client_id=cid)
    assert ack.opts[61] == cid                                  # RFC 6842 §3
    assert srv.leases()[0]["client_id"] == cid.hex(":")


def test_vlan_tag_is_kept(srv):
    offer = one(srv, message(DISCOVER, vlan=7))
    assert offer.pkt[Dot1Q].vlan == 7 and offer.bootp.yiaddr == "192.168.65.3"


def test_infinite_lease():
    srv = server(lease_time=0xFFFFFFFF)
    ack = dora(srv)
    assert ack.u32(51) == 0xFFFFFFFF and 58 not in ack.opts and 59 not in ack.opts
    assert srv.leases()[0]["expires_in"] is None and srv.leases()[0]["state"] == "bound"


def test_options_in_the_overloaded_file_field_are_read(srv):
    frame = bytearray(message(DISCOVER, options=[(52, b"\x01")]))
    # Put the hostname into 'file' (RFC 2132 §9.3); file starts at 108 of BOOTP.
    bootp_at = len(frame) - len(bytes(Ether(bytes(frame))[BOOTP]))
    file_at = bootp_at + 108
    frame[file_at:file_at + 7] = bytes([12, 4]) + b"vmf1" + b"\xff"
    one(srv, bytes(frame))
    assert srv.leases()[0]["hostname"] == "vmf1"


# -- addressing of replies (RFC 2131 §4.1) ---------------------------------------------------------

def test_offer_unicast_to_chaddr_and_yiaddr(srv):
    offer = one(srv, message(DISCOVER))
    assert offer.pkt.dst == MAC1 and offer.pkt[IP].dst == "192.168.65.3"
    assert offer.bootp.flags == 0


def test_broadcast_flag_gives_broadcast(srv):
    offer = one(srv, message(DISCOVER, flags=0x8000))
    assert offer.pkt.dst == BCAST and offer.pkt[IP].dst == "255.255.255.255"
    assert offer.bootp.flags == 0x8000


def test_renewing_is_answered_to_ciaddr(srv):
    dora(srv)
    ack = one(srv, message(REQUEST, src="192.168.65.3", dst="192.168.65.1", eth_dst=GW_MAC,
                           ciaddr="192.168.65.3", flags=0x8000))
    assert ack.type == ACK
    # ciaddr wins over the B flag: the client has its address configured.
    assert ack.pkt.dst == MAC1 and ack.pkt[IP].dst == "192.168.65.3"
    assert ack.bootp.ciaddr == "192.168.65.3" and ack.bootp.yiaddr == "192.168.65.3"


def test_rebinding_broadcast_is_acked(srv, clock):
    dora(srv)
    clock.now += 80000
    ack = one(srv, message(REQUEST, src="192.168.65.3", ciaddr="192.168.65.3"))
    assert ack.type == ACK and ack.pkt[IP].dst == "192.168.65.3"
    assert srv.leases()[0]["expires_in"] == 86400


def test_relayed_request_goes_to_the_relay(srv):
    relay_mac = "02:00:00:00:00:99"
    frame = message(DISCOVER, src="192.168.65.200", dst="192.168.65.1", eth_dst=GW_MAC, giaddr="192.168.65.200")
    frame = mac_bytes(GW_MAC) + mac_bytes(relay_mac) + frame[12:]
    offer = one(srv, frame)
    assert offer.pkt.dst == relay_mac and offer.pkt[IP].dst == "192.168.65.200"
    assert offer.pkt[UDP].dport == 67 and offer.bootp.giaddr == "192.168.65.200"
    nak = one(srv, mac_bytes(GW_MAC) + mac_bytes(relay_mac)
              + message(REQUEST, giaddr="192.168.65.200", src="192.168.65.200", dst="192.168.65.1",
                        options=[("requested_addr", "10.9.9.9")])[12:])
    assert nak.type == NAK and nak.pkt[IP].dst == "192.168.65.200"
    assert nak.bootp.flags & 0x8000                    # the relay must broadcast it


def test_nak_is_broadcast(srv):
    nak = one(srv, message(REQUEST, options=[("requested_addr", "10.0.0.5")]))
    assert nak.type == NAK
    assert nak.pkt.dst == BCAST and nak.pkt[IP].dst == "255.255.255.255"
    assert nak.bootp.yiaddr == "0.0.0.0" and nak.bootp.ciaddr == "0.0.0.0"
    assert set(nak.opts) == {53, 54, 56}               # RFC 2131 Table 3
    assert nak.ip(54) == "192.168.65.1"


# -- NAKs and silence -----------------------------------------------------------------------------

def test_selecting_with_another_address_is_nacked(srv):
    one(srv, message(DISCOVER))
    nak = one(srv, message(REQUEST, options=[("server_id", "192.168.65.1"), ("requested_addr", "192.168.65.9")]))
    assert nak.type == NAK and b"not this client's" in nak.opts[56]
    assert srv.stats["nak"] == 1


def test_selecting_another_server_is_silent_and_withdraws_the_offer(srv):
    one(srv, message(DISCOVER))
    # RFC 2131 §4.3.2: the REQUEST names another server: our offer was declined, say nothing.
    none(srv, message(REQUEST, options=[("server_id", "192.168.65.77"), ("requested_addr", "192.168.65.50")]))
    assert srv.stats["other_server"] == 1 and srv.stats["nak"] == 0
    assert srv.leases() == []


def test_init_reboot_on_the_wrong_network_is_nacked(srv):
    nak = one(srv, message(REQUEST, options=[("requested_addr", "10.1.2.3")]))
    assert nak.type == NAK and b"not on this network" in nak.opts[56]


def test_init_reboot_with_another_clients_address_is_nacked(srv):
    dora(srv, MAC1)
    nak = one(srv, message(REQUEST, MAC2, options=[("requested_addr", "192.168.65.3")]))
    assert nak.type == NAK
    assert srv.pool.lookup_ip(IP4("192.168.65.3")).mac == mac_bytes(MAC1)


def test_init_reboot_with_a_different_address_than_its_lease_is_nacked(srv):
    dora(srv, MAC1)
    nak = one(srv, message(REQUEST, MAC1, options=[("requested_addr", "192.168.65.40")]))
    assert nak.type == NAK


def test_init_reboot_of_an_unknown_client_keeps_a_free_address(srv):
    # Authoritative: after a restart of fastnet, the guest's remembered address is still free.
    ack = one(srv, message(REQUEST, MAC1, options=[("requested_addr", "192.168.65.40"), ("hostname", "back")]))
    assert ack.type == ACK and ack.bootp.yiaddr == "192.168.65.40"
    assert srv.leases()[0]["hostname"] == "back"


def test_init_reboot_into_a_reserved_address_is_nacked(srv):
    for ip in ("192.168.65.1", "192.168.65.2", "192.168.65.255"):
        assert one(srv, message(REQUEST, options=[("requested_addr", ip)])).type == NAK


def test_renewing_someone_elses_address_is_nacked(srv):
    dora(srv, MAC1)
    nak = one(srv, message(REQUEST, MAC2, src="192.168.65.3", dst="192.168.65.1", eth_dst=GW_MAC,
                           ciaddr="192.168.65.3"))
    assert nak.type == NAK and nak.pkt.dst == BCAST


def test_renewing_from_another_network_is_nacked(srv):
    nak = one(srv, message(REQUEST, src="10.0.0.5", ciaddr="10.0.0.5"))
    assert nak.type == NAK


def test_unicast_to_another_server_is_not_answered(srv):
    none(srv, message(REQUEST, src="192.168.65.3", dst="10.0.0.1", eth_dst=GW_MAC, ciaddr="192.168.65.3"))
    assert srv.stats["not_for_us"] == 1


# -- RELEASE, DECLINE, INFORM ------------------------------------------------------------------------

def test_release_then_discover_gives_the_same_address(srv):
    dora(srv, MAC1)
    dora(srv, MAC2)
    assert srv.pool.lookup_mac(mac_bytes(MAC2)).ip == IP4("192.168.65.4")
    release(srv, MAC1, "192.168.65.3")
    release(srv, MAC2, "192.168.65.4")
    assert srv.leases() == [] and srv.stats["release"] == 2
    # .3 is free and lower, but MAC2's previous address (RFC 2131 §4.3.1) comes first.
    offer = one(srv, message(DISCOVER, MAC2))
    assert offer.bootp.yiaddr == "192.168.65.4"


def test_release_of_an_address_not_the_clients_is_ignored(srv):
    dora(srv, MAC1)
    release(srv, MAC2, "192.168.65.3")
    assert srv.leases()[0]["mac"] == MAC1 and srv.stats["ignored"] == 1


def test_previous_address_follows_the_client_identifier(srv):
    cid = b"\x01" + mac_bytes(MAC1)
    dora(srv, MAC3)                                              # .3
    dora(srv, MAC1, client_id=cid)                               # .4
    release(srv, MAC3, "192.168.65.3")
    release(srv, MAC1, "192.168.65.4", client_id=cid)
    # Same identifier, new MAC (a container restarted with a random one): its old address,
    # not the lowest free one.
    offer = one(srv, message(DISCOVER, MAC2, options=[("client_id", cid)]))
    assert offer.bootp.yiaddr == "192.168.65.4"


def test_requested_address_is_offered_when_free(srv):
    offer = one(srv, message(DISCOVER, options=[("requested_addr", "192.168.65.77")]))
    assert offer.bootp.yiaddr == "192.168.65.77"
    offer = one(srv, message(DISCOVER, MAC2, options=[("requested_addr", "192.168.65.77")]))
    assert offer.bootp.yiaddr == "192.168.65.3"                  # taken: a new one instead
    offer = one(srv, message(DISCOVER, MAC3, options=[("requested_addr", "10.0.0.8")]))
    assert offer.bootp.yiaddr == "192.168.65.4"


def test_decline_holds_the_address(srv, clock):
    dora(srv, MAC1)
    none(srv, message(DECLINE, MAC1, options=[("server_id", "192.168.65.1"), ("requested_addr", "192.168.65.3")]))
    assert srv.stats["declined"] == 1
    assert srv.leases() == []                                    # held addresses are not leases
    assert one(srv, message(DISCOVER, MAC1)).bootp.yiaddr == "192.168.65.4"
    assert one(srv, message(DISCOVER, MAC2)).bootp.yiaddr == "192.168.65.5"
    clock.now += dhcp_mod.DECLINE_HOLD + 1
    assert one(srv, message(DISCOVER, MAC3)).bootp.yiaddr == "192.168.65.3"


def test_a_declined_static_address_is_held_and_its_owner_served_elsewhere(clock):
    # The held address is the pool's own mark: the static lease's owner gets another address
    # while it lasts (not its static one back), every binding stays findable by address, and
    # the owner's address returns once the hold ends.
    srv = server(clock, leases=[StaticLease(ip=IP4("192.168.65.9"), mac=mac_bytes(MAC1))])
    assert dora(srv, MAC1).bootp.yiaddr == "192.168.65.9"
    none(srv, message(DECLINE, MAC1, options=[("server_id", "192.168.65.1"), ("requested_addr", "192.168.65.9")]))
    ack = dora(srv, MAC1)
    assert ack.bootp.yiaddr == "192.168.65.3"
    assert [x["ip"] for x in srv.leases()] == ["192.168.65.3"]
    assert srv.pool.lookup_ip(IP4("192.168.65.3")).mac == mac_bytes(MAC1)
    clock.now += dhcp_mod.DECLINE_HOLD + 1
    assert one(srv, message(DISCOVER, MAC2)).bootp.yiaddr == "192.168.65.4"  # the hold ended ...
    assert srv.pool.lookup_ip(IP4("192.168.65.3")).mac == mac_bytes(MAC1)     # ... and took nobody's lease


def test_nobody_takes_another_guests_static_address_by_preference():
    srv = server(leases=[StaticLease(ip=IP4("192.168.65.9"), mac=mac_bytes(MAC2))])
    with pytest.raises(AddressError, match="already used"):
        srv.pool.allocate(uuid="u-vm", preferred=IP4("192.168.65.9"))   # a vmnet client asking
    assert srv.pool.allocate(mac=mac_bytes(MAC2), preferred=IP4("192.168.65.9")).ip == IP4("192.168.65.9")


def test_decline_needs_our_server_id_and_the_clients_address(srv):
    dora(srv, MAC1)
    none(srv, message(DECLINE, MAC1, options=[("requested_addr", "192.168.65.3")]))
    none(srv, message(DECLINE, MAC2, options=[("server_id", "192.168.65.1"), ("requested_addr", "192.168.65.3")]))
    assert srv.stats["declined"] == 0 and srv.leases()[0]["mac"] == MAC1


def test_inform_gets_configuration_only(srv):
    ack = one(srv, message(INFORM, src="192.168.65.50", dst="255.255.255.255", ciaddr="192.168.65.50",
                           options=[("param_req_list", [1, 3, 6, 15])]))
    assert ack.type == ACK
    assert ack.bootp.yiaddr == "0.0.0.0" and ack.bootp.ciaddr == "192.168.65.50"
    assert ack.pkt.dst == MAC1 and ack.pkt[IP].dst == "192.168.65.50"
    assert not {51, 58, 59} & set(ack.opts)
    assert ack.ip(1) == "255.255.255.0" and ack.ip(3) == "192.168.65.1" and ack.opts[15] == b"localdomain"
    assert srv.leases() == [] and srv.stats["inform"] == 1


# -- where addresses come from --------------------------------------------------------------------

def test_two_clients_get_different_addresses(srv):
    a, b = dora(srv, MAC1), dora(srv, MAC2)
    assert a.bootp.yiaddr == "192.168.65.3" and b.bootp.yiaddr == "192.168.65.4"
    # And each gets its own again.
    assert one(srv, message(DISCOVER, MAC1)).bootp.yiaddr == "192.168.65.3"


def test_static_lease_by_mac():
    srv = server(leases=[StaticLease(ip=IP4("192.168.65.9"), mac=mac_bytes(MAC2), hostname="db")])
    assert dora(srv, MAC1).bootp.yiaddr == "192.168.65.3"
    ack = dora(srv, MAC2)
    assert ack.bootp.yiaddr == "192.168.65.9"
    lease = {x["mac"]: x for x in srv.leases()}[MAC2]
    assert lease["hostname"] == "db"
    # Even asking for another address (option 50) it is offered its static one.
    srv2 = server(leases=[StaticLease(ip=IP4("192.168.65.9"), mac=mac_bytes(MAC2))])
    offer = one(srv2, message(DISCOVER, MAC2, options=[("requested_addr", "192.168.65.20")]))
    assert offer.bootp.yiaddr == "192.168.65.9"
    # And nobody else gets a static address by asking for it.
    offer = one(srv2, message(DISCOVER, MAC3, options=[("requested_addr", "192.168.65.9")]))
    assert offer.bootp.yiaddr == "192.168.65.3"


def test_static_lease_by_uuid():
    uuid = "d1f0f0c2-3a86-4b9e-9d5e-3a0b1f1c0b2a"
    srv = server(leases=[StaticLease(ip=IP4("192.168.65.20"), uuid=uuid)])
    ack = dora(srv, MAC1, uuid=uuid)
    assert ack.bootp.yiaddr == "192.168.65.20"
    assert srv.leases()[0]["uuid"] == uuid


def test_vmnet_guest_gets_its_handshake_address():
    srv = server()
    srv.pool.allocate(uuid="u-first")                           # another VM: .3, 02:50:00:00:00:01
    vm = srv.pool.allocate(uuid="u-vm")                         # .4, 02:50:00:00:00:02
    mac = format_mac(vm.mac)
    ack = dora(srv, mac, uuid="u-vm", hostname="vmhost")
    assert ack.bootp.yiaddr == "192.168.65.4"
    lease = {x["ip"]: x for x in srv.leases()}["192.168.65.4"]
    assert lease["hostname"] == "vmhost" and lease["uuid"] == "u-vm" and lease["state"] == "bound"
    assert {x["ip"]: x for x in srv.leases()}["192.168.65.3"]["state"] == "assigned"
    # A vmnet lease survives RELEASE: the VM gets it back.
    none(srv, message(RELEASE, mac, src="192.168.65.4", dst="192.168.65.1", eth_dst=GW_MAC,
                      ciaddr="192.168.65.4"), uuid="u-vm")
    assert srv.pool.lookup_ip(IP4("192.168.65.4")) is vm
    assert {x["ip"]: x for x in srv.leases()}["192.168.65.4"]["state"] == "assigned"


def tiny(clock) -> DhcpServer:
    return server(clock, subnet=ipaddress.IPv4Network("10.0.0.0/29"), gateway=IP4("10.0.0.1"),
                  host_alias=IP4("10.0.0.2"), first_guest=IP4("10.0.0.3"), last_guest=IP4("10.0.0.4"),
                  lease_time=600)


def test_pool_exhaustion_gives_no_offer(clock):
    srv = tiny(clock)
    assert dora(srv, MAC1).bootp.yiaddr == "10.0.0.3"
    assert dora(srv, MAC2).bootp.yiaddr == "10.0.0.4"
    assert dora(srv, MAC1).ip(28) == "10.0.0.7" and dora(srv, MAC1).ip(1) == "255.255.255.248"
    none(srv, message(DISCOVER, MAC3))
    assert srv.stats["exhausted"] == 1 and srv.stats["offer"] == 4


def test_exhausted_pool_reclaims_expired_leases_and_stale_offers(clock):
    srv = tiny(clock)
    dora(srv, MAC1)
    one(srv, message(DISCOVER, MAC2))                           # offered, never requested
    none(srv, message(DISCOVER, MAC3))
    clock.now += dhcp_mod.OFFER_HOLD + 1
    assert one(srv, message(DISCOVER, MAC3)).bootp.yiaddr == "10.0.0.4"
    none(srv, message(DISCOVER, "02:00:00:00:00:0d"))
    clock.now += 600
    assert one(srv, message(DISCOVER, "02:00:00:00:00:0d")).bootp.yiaddr == "10.0.0.3"
    # The expired client comes back: its address is gone, and it is told so.
    assert one(srv, message(REQUEST, MAC1, src="10.0.0.3", ciaddr="10.0.0.3")).type == NAK


# -- malformed and foreign input --------------------------------------------------------------------

def test_bad_magic_cookie_is_counted():
    srv = server()
    frame = bytearray(message(DISCOVER))
    at = frame.index(b"\x63\x82\x53\x63")
    frame[at:at + 4] = b"\x63\x82\x53\x64"
    none(srv, bytes(frame))
    assert srv.stats["malformed"] == 1 and srv.stats["bad_cookie"] == 1 and srv.stats["offer"] == 0


@pytest.mark.parametrize("kw,key", [({"op": 2}, "bad_op"), ({"htype": 6}, "bad_htype"), ({"hlen": 16}, "bad_htype")])
def test_wrong_op_or_hardware_is_counted(kw, key):
    srv = server()
    none(srv, message(DISCOVER, **kw))
    assert srv.stats["malformed"] == 1 and srv.stats[key] == 1


def test_truncated_options_are_counted():
    srv = server()
    # Message type DISCOVER, then a hostname option claiming 20 bytes with 3 left.
    body = bytes(BOOTP(chaddr=mac_bytes(MAC1), options=b"\x63\x82\x53\x63")) + b"\x35\x01\x01\x0c\x14abc"
    none(srv, bytes(Ether(src=MAC1, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
                    / UDP(sport=68, dport=67) / Raw(body)))
    assert srv.stats["truncated"] == 1


@pytest.mark.parametrize("cut", [0, 1, 100, 235, 239])
def test_short_messages_are_counted(cut):
    srv = server()
    pkt = Ether(message(DISCOVER))
    body = bytes(pkt[BOOTP])[:cut]
    none(srv, bytes(Ether(src=MAC1, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
                    / UDP(sport=68, dport=67) / Raw(body)))
    assert srv.stats["malformed"] == 1 and srv.stats["truncated"] == 1


def test_bad_option_length_is_counted():
    srv = server()
    none(srv, message(REQUEST, options=[(50, b"\xc0\xa8\x41")]))   # a 3-byte requested address
    assert srv.stats["bad_option"] == 1


def test_bootp_and_server_messages_are_ignored():
    srv = server()
    none(srv, message(None))                                      # BOOTP: no option 53
    none(srv, message(OFFER))
    none(srv, message(ACK))
    assert srv.stats["ignored"] == 3 and srv.stats["malformed"] == 0


def test_non_dhcp_frames_are_ignored():
    srv = server()
    none(srv, b"\x00" * 10)
    none(srv, bytes(Ether(src=MAC1, dst=GW_MAC) / IP(src="192.168.65.3", dst="192.168.65.1")
                    / UDP(sport=1000, dport=53) / b"x"))
    assert srv.stats["ignored"] == 2 and srv.stats["received"] == 0


# -- option encodings -----------------------------------------------------------------------------

def test_domain_search_matches_rfc3397_example():
    # RFC 3397 §2: "eng.apple.com." and "marketing.apple.com." (the RFC shows the 27 bytes
    # split across three option instances; their concatenation is this).
    assert encode_domain_search(["eng.apple.com.", "marketing.apple.com."]) == (
        b"\x03eng\x05apple\x03com\x00" b"\x09marketing\xc0\x04")


def test_domain_search_compresses_whole_names_and_ignores_case():
    assert encode_domain_search(["a.example", "A.EXAMPLE", "example"]) == (
        b"\x01a\x07example\x00" b"\xc0\x00" b"\xc0\x02")


def test_bad_search_domains_are_left_out():
    srv = server(search=["good.example", "bad.." + "x" * 70, "also.good"])
    offer = one(srv, message(DISCOVER))
    assert offer.opts[119] == encode_domain_search(["good.example", "also.good"])
    with pytest.raises(ValueError):
        encode_domain_search(["x" * 64 + ".com"])


def test_empty_search_and_domain_are_omitted():
    offer = one(server(search=[], domain=""), message(DISCOVER))
    assert 119 not in offer.opts and 15 not in offer.opts


@pytest.mark.parametrize("raw,name", [(b"vm1", "vm1"), (b"vm1\x00", "vm1"), (b"vm1.corp.", "vm1.corp"),
                                      (b"under_score", None), (b"-bad", None), (b"\xc3\xa9t\xc3\xa9", None)])
def test_hostnames_are_stored_only_when_dns_can_serve_them(raw, name):
    srv = server()
    one(srv, message(DISCOVER, options=[(12, raw)]))
    assert srv.leases()[0]["hostname"] == name


def test_dns_server_and_mtu_come_from_the_config():
    offer = one(server(dns=IP4("192.168.65.53"), mtu=9000), message(DISCOVER, options=[("max_dhcp_size", 1500)]))
    assert offer.ip(6) == "192.168.65.53" and offer.ip(3) == "192.168.65.1"
    assert struct.unpack("!H", offer.opts[26])[0] == 9000
