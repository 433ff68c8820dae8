"""The DNS service in-process: local zones, the hosts file, truncation, the cache's TTLs,
forwarding to a dnspython authoritative server on 127.0.0.1 (tests/services/authority.py), and
malformed input. Every upstream here is that server or a dead loopback port: no query leaves
the machine, and the machine's own resolv.conf is never read (each test writes its own)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnet.errors import ConfigError
from fastnet.services.addressing import AddressPool
from fastnet.services.config import DnsConfig, NetworkConfig, network_from_dict, parse_server
from fastnet.services.dns import DnsService
from fastnet.services.dns_cache import AnswerCache, answer_ttl, cache_key
from fastnet.services.dns_files import WatchedFile, parse_hosts, parse_resolv_conf
from fastnet.services.dns_messages import render
from tests.services.authority import BIG_COUNT, BIG_NAME, Authority

pytestmark = pytest.mark.timeout(60)

HOST_ALIAS = "192.168.65.2"
GATEWAY = "192.168.65.1"
HOST_NAMES = ["host.docker.internal", "docker.for.mac.localhost", "docker.for.mac.host.internal",
              "host.containers.internal"]
GATEWAY_NAMES = ["gateway.docker.internal", "docker.for.mac.gateway.internal", "gateway.containers.internal"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def dead_port() -> int:
    """A loopback UDP port nobody listens on: queries to it draw ICMP port-unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_service(tmp_path, servers=(), *, hosts_text: str = "", pool=None, clock=None, getaddrinfo=None,
                 config: NetworkConfig | None = None, **dns_settings) -> DnsService:
    """A service on the running loop whose resolv.conf and hosts file are the test's own."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("".join(f"nameserver {s}\n" for s in servers))
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(hosts_text)
    opts = dict(resolv_conf=str(resolv), hosts_file=str(hosts_file), timeout=2.0, retry_interval=0.5,
                system_fallback=getaddrinfo is not None)
    opts.update(dns_settings)
    cfg = (config or NetworkConfig()).replace(dns_service=DnsConfig(**opts))
    return DnsService(cfg, pool=pool, loop=asyncio.get_running_loop(), getaddrinfo=getaddrinfo,
                      clock=clock or time.monotonic)


async def ask(svc: DnsService, name: str, rdtype="A", *, tcp: bool = False, **kw):
    """The parsed reply to a fresh query, and its size on the wire."""
    query = dns.message.make_query(name, rdtype, **kw)
    wire = await svc.answer(query.to_wire(), tcp=tcp)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id and reply.flags & dns.flags.QR
    assert reply.question == query.question
    return reply, len(wire)


def addresses(reply, rdtype=dns.rdatatype.A) -> list[str]:
    return sorted(r.address for rrset in reply.answer if rrset.rdtype == rdtype for r in rrset)


# -- local zones ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ip", [(n, HOST_ALIAS) for n in HOST_NAMES] + [(n, GATEWAY) for n in GATEWAY_NAMES])
def test_default_alias_answers_its_address(tmp_path, name, ip):
    async def go():
        svc = make_service(tmp_path)
        reply, _ = await ask(svc, name)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.AA and reply.flags & dns.flags.RA
        assert addresses(reply) == [ip]
        assert reply.answer[0].ttl == 0
    run(go())


@pytest.mark.parametrize("rdtype", ["AAAA", "MX", "TXT", "SRV", "HTTPS"])
def test_alias_without_that_type_is_nodata_and_stays_local(tmp_path, rdtype):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, "host.docker.internal", rdtype)
            assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
            assert auth.queries == []
    run(go())


def test_unknown_name_in_a_builtin_zone_is_nxdomain_without_asking_upstream(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, "nothing.docker.internal")
            assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
            assert auth.queries == []
    run(go())


def test_the_guests_spelling_of_a_name_comes_back(tmp_path):
    async def go():
        svc = make_service(tmp_path)
        reply, _ = await ask(svc, "HoSt.DoCkEr.InTeRnAl")
        assert reply.answer[0].name.to_text() == "HoSt.DoCkEr.InTeRnAl."
        assert addresses(reply) == [HOST_ALIAS]
    run(go())


def test_any_gives_every_address_of_a_local_name(tmp_path):
    async def go():
        svc = make_service(tmp_path)
        svc.add_record("dual.internal.test", "192.168.65.40")
        svc.add_record("dual.internal.test", "fd00::40")
        reply, _ = await ask(svc, "dual.internal.test", "ANY")
        assert addresses(reply) == ["192.168.65.40"]
        assert addresses(reply, dns.rdatatype.AAAA) == ["fd00::40"]
    run(go())


def test_guests_are_named_by_hostname_and_uuid(tmp_path):
    async def go():
        cfg = NetworkConfig()
        pool = AddressPool(cfg)
        vm = pool.allocate(mac=bytes.fromhex("020000000001"), hostname="builder")
        other = pool.allocate(uuid="c3d68012-0208-11ea-9fd7-f2189899ab08")
        sneaky = pool.allocate(mac=bytes.fromhex("020000000003"), hostname="www.example.com")
        svc = make_service(tmp_path, pool=pool, config=cfg)
        for name, lease in (("builder.localdomain", vm), ("builder", vm), ("BUILDER.localdomain", vm),
                            ("c3d68012-0208-11ea-9fd7-f2189899ab08.localdomain", other),
                            ("www.localdomain", sneaky)):
            reply, _ = await ask(svc, name)
            assert addresses(reply) == [str(lease.ip)], name
        # A guest's dotted hostname claims its first label only, not the outside name.
        assert svc.local.lookup(dns.name.from_text("www.example.com")) is None
        reply, _ = await ask(svc, ipaddress.ip_address(vm.ip).reverse_pointer, "PTR")
        assert [r.target.to_text() for r in reply.answer[0]] == ["builder.localdomain."]
        guests = [z for z in svc.zones() if z.get("guests")]
        assert guests and {"name": "builder", "ip": str(vm.ip)} in guests[0]["records"]
    run(go())


def test_reverse_names_of_the_subnet_are_local(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, "1.65.168.192.in-addr.arpa", "PTR")
            assert "gateway.docker.internal." in [r.target.to_text() for r in reply.answer[0]]
            reply, _ = await ask(svc, "200.65.168.192.in-addr.arpa", "PTR")
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert auth.queries == []
            # Outside the virtual subnet the address is the world's: forwarded.
            reply, _ = await ask(svc, "80.0.0.10.in-addr.arpa", "PTR")
            assert reply.answer[0][0].target.to_text() == "www.example.test."
    run(go())


# -- editing at runtime (what the control API calls) ------------------------------------------------

def test_records_added_and_removed_at_runtime(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            zone = svc.add_record("db.example.test", "192.168.65.9")
            assert zone["authoritative"] is False
            reply, _ = await ask(svc, "db.example.test")
            assert addresses(reply) == ["192.168.65.9"]
            # The record claims its own name only: its siblings still come from upstream.
            reply, _ = await ask(svc, "www.example.test")
            assert addresses(reply) == ["10.0.0.80"]
            assert svc.remove_record("db.example.test") == 1
            reply, _ = await ask(svc, "db.example.test")
            assert reply.rcode() == dns.rcode.NXDOMAIN   # from upstream now
            assert not any(z["name"] == "example.test." for z in svc.zones())
            with pytest.raises(ValueError):
                svc.add_record("x.test", "not-an-ip")
    run(go())


def test_zones_take_gvproxys_shape(tmp_path):
    async def go():
        svc = make_service(tmp_path)
        listed = svc.zones()
        json.dumps(listed)
        docker = next(z for z in listed if z["name"] == "docker.internal.")
        assert {"name": "host", "ip": HOST_ALIAS} in docker["records"]
        assert {"name": "gateway", "ip": GATEWAY} in docker["records"]
        # POST /services/dns/add's body as gvproxy takes it (Go field names).
        svc.add_zone({"Name": "dynamic.internal.", "Records": [{"Name": "test", "IP": "192.168.65.20"},
                                                              {"Regexp": "^api-[0-9]+\\.", "IP": "192.168.65.21"}],
                      "DefaultIP": "192.168.65.22"})
        for name, ip in (("test.dynamic.internal", "192.168.65.20"), ("api-7.dynamic.internal", "192.168.65.21"),
                         ("other.dynamic.internal", "192.168.65.22")):
            reply, _ = await ask(svc, name)
            assert addresses(reply) == [ip], name
        # Adding a zone of the same name puts the new records first and replaces the zone.
        svc.add_zone({"name": "dynamic.internal", "records": [{"name": "new", "ip": "192.168.65.23"}]})
        zone = next(z for z in svc.zones() if z["name"] == "dynamic.internal.")
        assert [r["name"] for r in zone["records"]] == ["new", "test", ""]
        assert zone["default_ip"] is None
        reply, _ = await ask(svc, "other.dynamic.internal")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert svc.remove_zone("dynamic.internal.") is True
        with pytest.raises(ValueError):
            svc.add_zone({"Name": "bad.internal.", "Records": [{"Name": "x", "IP": "999.1.1.1"}]})
    run(go())


def test_dns_table_of_the_config_file(tmp_path):
    cfg = network_from_dict({"dns": {"upstream": ["127.0.0.1:5353", "[::1]:53", "10.0.0.1"], "timeout": 3,
                                     "hosts": {"db.internal": "192.168.65.9", "v6.internal": ["fd00::9"]},
                                     "zone": [{"name": "corp.internal.", "records": [{"name": "a", "ip": "192.168.65.10"}]}],
                                     "host_names": ["myhost.internal"], "hosts_file": ""}})
    d = cfg.dns_service
    assert d.upstream == ["127.0.0.1:5353", "[::1]:53", "10.0.0.1"] and d.timeout == 3.0
    assert d.hosts_file is None and d.host_names == ["myhost.internal"]

    async def go():
        svc = make_service(tmp_path, config=cfg, **{k: getattr(d, k) for k in ("hosts", "zones", "host_names")})
        for name, ip in (("db.internal", "192.168.65.9"), ("a.corp.internal", "192.168.65.10"),
                         ("myhost.internal", HOST_ALIAS)):
            reply, _ = await ask(svc, name)
            assert addresses(reply) == [ip]
        reply, _ = await ask(svc, "v6.internal", "AAAA")
        assert addresses(reply, dns.rdatatype.AAAA) == ["fd00::9"]
        reply, _ = await ask(svc, "host.docker.internal")     # default host names replaced
        assert reply.rcode() == dns.rcode.NXDOMAIN            # docker.internal. is still ours
    run(go())


@pytest.mark.parametrize("table,message", [
    ({"bogus": 1}, "unknown setting dns.bogus"),
    ({"upstream": ["nameserver.example"]}, "dns.upstream"),
    ({"hosts": {"x": "1.2.3"}}, "dns.hosts"),
    ({"timeout": 0}, "dns.timeout"),
    ({"enabled": "yes"}, "dns.enabled"),
    ({"zone": [{"name": "x.internal.", "records": [{"name": "a", "ip": "not-an-ip"}]}]}, "dns.zone"),
    ({"zone": [{"records": []}]}, "dns.zone"),
])
def test_bad_dns_settings_fail_at_load(table, message):
    with pytest.raises(ConfigError, match=message):
        network_from_dict({"dns": table})


def test_parse_server_spellings():
    assert parse_server("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("127.0.0.1#5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("::1") == ("::1", 53)
    assert parse_server("fe80::1%lo") == ("fe80::1%lo", 53)
    for bad in ("example.com", "1.2.3.4:0", "[::1", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_server(bad)


def test_the_network_serves_dns_unless_disabled():
    from fastnet.services.network import VirtualNetwork

    loop = asyncio.new_event_loop()
    try:
        on = VirtualNetwork(NetworkConfig(dns_service=DnsConfig(resolv_conf="/nonexistent", hosts_file=None)),
                            loop=loop)
        assert on.policy.udp_services[53] == on.dns.serve_udp and on.policy.tcp_services[53] == on.dns.serve_tcp
        assert "dns" in on.stats()
        off = VirtualNetwork(NetworkConfig(dns_service=DnsConfig(enabled=False)), loop=loop)
        assert off.dns is None and 53 not in off.policy.udp_services and 53 not in off.policy.tcp_services
        on.close()
    finally:
        loop.close()


# -- the hosts file and resolv.conf --------------------------------------------------------------

def test_parse_hosts():
    text = """
    127.0.0.1   localhost
    ::1         localhost ip6-localhost   # both families
    10.0.0.7    Build.Example.   build    # trailing dot and case
    not-an-ip   ignored
    10.0.0.8
    # 10.0.0.9 commented
    fe80::1%eth0 linklocal
    """
    hosts = parse_hosts(text)
    assert [str(a) for a in hosts["localhost"]] == ["127.0.0.1", "::1"]
    assert [str(a) for a in hosts["build.example"]] == ["10.0.0.7"] and "build" in hosts
    assert [str(a) for a in hosts["linklocal"]] == ["fe80::1"]
    assert "ignored" not in hosts and "10.0.0.9" not in str(hosts)


def test_parse_resolv_conf():
    text = """# generated
    nameserver 127.0.0.53
    ; comment
    nameserver 10.0.0.1#5353
    nameserver fe80::1%eth0
    nameserver bogus
    nameserver 127.0.0.53
    search example.com
    options edns0 trust-ad
    """
    assert parse_resolv_conf(text) == [("127.0.0.53", 53), ("10.0.0.1", 5353), ("fe80::1%eth0", 53)]


def test_watched_file_reloads_on_change_at_most_once_per_interval(tmp_path):
    path = tmp_path / "f"
    path.write_text("a")
    clock = Clock()
    wf = WatchedFile(str(path), lambda t: t, interval=1.0, clock=clock)
    assert wf.value == "a"
    path.write_text("bb")
    assert wf.value == "a"            # not checked again within the interval
    clock.now += 1.0
    assert wf.value == "bb"
    os.unlink(path)
    clock.now += 1.0
    assert wf.value == ""             # gone: empty
    assert WatchedFile(None, lambda t: t).value == ""


def test_hosts_file_answers_and_changes_apply_without_restart(tmp_path):
    async def go():
        clock = Clock()
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address], clock=clock,
                               hosts_text="10.9.9.9 devbox devbox.lan\n127.0.0.1 host.docker.internal\n")
            reply, _ = await ask(svc, "devbox.lan")
            assert addresses(reply) == ["10.9.9.9"] and not reply.flags & dns.flags.AA
            reply, _ = await ask(svc, "devbox", "AAAA")
            assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
            # fastnet's own names win over the host's file (Docker Desktop writes this one there,
            # meaning the host's loopback, which is the alias from inside the guest).
            reply, _ = await ask(svc, "host.docker.internal")
            assert addresses(reply) == [HOST_ALIAS]
            (tmp_path / "hosts").write_text("10.9.9.10 devbox.lan\n")
            clock.now += 1.0
            reply, _ = await ask(svc, "devbox.lan")
            assert addresses(reply) == ["10.9.9.10"]
            reply, _ = await ask(svc, "devbox")       # gone from the file: asked upstream, which refuses
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert svc.stats()["hosts_file_reloads"] == 2
    run(go())


def test_resolv_conf_change_moves_to_the_new_servers_and_drops_the_cache(tmp_path):
    async def go():
        clock = Clock()
        with Authority() as first, Authority() as second:
            svc = make_service(tmp_path, [first.address], clock=clock)
            await ask(svc, "www.example.test")
            await ask(svc, "www.example.test")
            assert len(first.queries) == 1          # the second came from the cache
            (tmp_path / "resolv.conf").write_text(f"nameserver {second.address}\n")
            clock.now += 1.0
            reply, _ = await ask(svc, "www.example.test")
            assert addresses(reply) == ["10.0.0.80"]
            assert len(first.queries) == 1 and len(second.queries) == 1
            assert svc.stats()["upstream"]["servers"] == [second.address]
    run(go())


# -- forwarding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,rdtype", [
    ("www.example.test", "A"), ("www.example.test", "AAAA"), ("example.test", "MX"), ("example.test", "TXT"),
    ("_http._tcp.example.test", "SRV"), ("example.test", "CAA"), ("80.0.0.10.in-addr.arpa", "PTR"),
    ("example.test", "SOA"), ("example.test", "NS"), ("alias.example.test", "CNAME"),
])
def test_every_record_type_is_forwarded(tmp_path, name, rdtype):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, name, rdtype, use_edns=0, want_dnssec=True)
            expected = auth.respond(dns.message.make_query(name, rdtype))
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.answer == expected.answer and reply.answer
            # Forwarded as it came: same question, flags and EDNS; only the ID is ours.
            (_, seen, _), = auth.queries
            assert seen.question == reply.question and seen.flags == dns.flags.RD
            assert seen.edns == 0 and seen.ednsflags & dns.flags.DO and seen.payload == 1232
    run(go())


def test_ids_and_source_ports_are_random(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            client_id = 4242
            for i in range(30):
                await ask(svc, f"n{i}.example.test", id=client_id)
            ids = {q.id for _, q, _ in auth.queries}
            ports = {peer[1] for _, _, peer in auth.queries}
            assert len(auth.queries) == 30
            assert len(ids) >= 28 and len(ports) >= 28
    run(go())


def test_nxdomain_from_upstream_stays_nxdomain(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, "missing.example.test")
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert reply.authority[0].rdtype == dns.rdatatype.SOA
    run(go())


def test_upstream_servfail_is_servfail(tmp_path):
    async def go():
        with Authority() as auth:
            auth.mode = "servfail"
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, "www.example.test")
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert svc.stats()["upstream"]["rcodes"] == {"SERVFAIL": 1}
    run(go())


def test_unreachable_upstream_is_servfail_at_once(tmp_path):
    async def go():
        svc = make_service(tmp_path, [f"127.0.0.1#{dead_port()}"], timeout=3.0)
        t0 = time.monotonic()
        reply, _ = await ask(svc, "www.example.test", "MX", use_edns=0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - t0 < 1.0          # port unreachable, not the timeout
        ede = [o for o in reply.options if o.otype == dns.edns.OptionType.EDE]
        assert ede and ede[0].code == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
        assert svc.stats()["upstream"]["unreachable"] == 1
    run(go())


def test_silent_upstream_is_servfail_within_the_timeout(tmp_path):
    async def go():
        with Authority() as auth:
            auth.mode = "silent"
            svc = make_service(tmp_path, [auth.address], timeout=1.5, retry_interval=0.5)
            t0 = time.monotonic()
            reply, _ = await ask(svc, "www.example.test")
            elapsed = time.monotonic() - t0
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert 1.4 <= elapsed <= 2.5
            assert len(auth.queries) == 3            # sent, then resent every retry interval
    run(go())


def test_a_lost_query_is_resent(tmp_path):
    async def go():
        with Authority() as auth:
            auth.drop = 1
            svc = make_service(tmp_path, [auth.address], retry_interval=0.3)
            reply, _ = await ask(svc, "www.example.test")
            assert addresses(reply) == ["10.0.0.80"]
            assert len(auth.queries) == 2
            assert auth.queries[0][1].id != auth.queries[1][1].id
    run(go())


def test_a_dead_first_server_does_not_delay_the_second(tmp_path):
    async def go():
        with Authority() as auth:
            # A long retry interval: an answer well before it shows the dead server was not waited for.
            svc = make_service(tmp_path, [f"127.0.0.1#{dead_port()}", auth.address], timeout=5.0, retry_interval=2.0)
            t0 = time.monotonic()
            reply, _ = await ask(svc, "www.example.test")
            assert addresses(reply) == ["10.0.0.80"] and time.monotonic() - t0 < 1.0
    run(go())


def test_the_first_servers_answer_is_preferred(tmp_path):
    async def go():
        with Authority() as first, Authority() as second:
            # The second server has its own idea of www (as a public resolver next to a VPN's
            # might) and answers faster; the first is listed first, so its answer is the one.
            zone = second.zones[dns.name.from_text("example.test.")]
            rds = zone.find_node(dns.name.from_text("www.example.test.")).find_rdataset(
                dns.rdataclass.IN, dns.rdatatype.A)
            rds.clear()
            rds.add(dns.rdata.from_text("IN", "A", "10.0.0.99"), 300)
            first.delay = 0.15
            svc = make_service(tmp_path, [first.address, second.address])
            reply, _ = await ask(svc, "www.example.test")
            assert addresses(reply) == ["10.0.0.80"]
            # A failing first server hands over at once.
            first.mode = "servfail"
            reply, _ = await ask(svc, "www.example.test", "AAAA")
            assert reply.rcode() == dns.rcode.NOERROR
            first.mode = "silent"
            t0 = time.monotonic()
            reply, _ = await ask(svc, "mail.example.test")     # a silent first gets one retry interval
            assert addresses(reply) == ["10.0.0.25"]
            assert 0.45 <= time.monotonic() - t0 < 1.5
    run(go())


def test_concurrent_identical_questions_share_one_exchange(tmp_path):
    async def go():
        with Authority() as auth:
            auth.delay = 0.2
            svc = make_service(tmp_path, [auth.address])
            results = await asyncio.gather(*(ask(svc, "www.example.test") for _ in range(5)))
            assert all(addresses(r) == ["10.0.0.80"] for r, _ in results)
            assert len(auth.queries) == 1 and svc.stats()["shared_exchanges"] == 4
    run(go())


def test_system_resolver_fallback_when_no_nameserver_answers(tmp_path):
    calls = []

    async def fake_getaddrinfo(host, port, *, family=0, type=0, **kw):
        calls.append((host, family))
        if host == "gone.example.":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "flaky.example.":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
        if family == socket.AF_INET6:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::7", 0, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.7.7.7", 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.7.7.7", 0))]

    async def go():
        svc = make_service(tmp_path, [], getaddrinfo=fake_getaddrinfo)
        reply, _ = await ask(svc, "vpn-only.example")
        assert addresses(reply) == ["10.7.7.7"] and reply.answer[0].ttl == 0
        reply, _ = await ask(svc, "vpn-only.example", "AAAA")
        assert addresses(reply, dns.rdatatype.AAAA) == ["2001:db8::7"]
        reply, _ = await ask(svc, "gone.example")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        reply, _ = await ask(svc, "flaky.example")
        assert reply.rcode() == dns.rcode.SERVFAIL
        reply, _ = await ask(svc, "vpn-only.example", "MX")     # not an address question
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert calls == [("vpn-only.example.", socket.AF_INET), ("vpn-only.example.", socket.AF_INET6),
                         ("gone.example.", socket.AF_INET), ("flaky.example.", socket.AF_INET)]
        assert svc.stats()["from_system_resolver"] == 3
        # A server that answers, even with an error, was reachable: no fallback.
        with Authority() as auth:
            auth.mode = "servfail"
            (tmp_path / "resolv.conf").write_text(f"nameserver {auth.address}\n")
            svc = make_service(tmp_path, [auth.address], getaddrinfo=fake_getaddrinfo)
            reply, _ = await ask(svc, "vpn-only.example")
            assert reply.rcode() == dns.rcode.SERVFAIL and len(calls) == 4
    run(go())


# -- sizes: EDNS0, truncation, TCP ---------------------------------------------------------------

def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            reply, size = await ask(svc, BIG_NAME)                       # no EDNS0: 512 bytes
            assert reply.flags & dns.flags.TC and size <= 512
            assert 0 < len(reply.answer[0]) < BIG_COUNT                  # whole records, as many as fit
            # Upstream truncated too; the service fetched it all over TCP and kept it.
            assert [t for t, _, _ in auth.queries] == ["udp", "tcp"]
            reply, size = await ask(svc, BIG_NAME, tcp=True)
            assert not reply.flags & dns.flags.TC and len(reply.answer[0]) == BIG_COUNT
            assert len(auth.queries) == 2                                # from the cache
    run(go())


@pytest.mark.parametrize("bufsize,max_udp,truncated", [(512, 4096, True), (1232, 4096, True),
                                                        (4096, 4096, False), (4096, 1232, True), (100, 4096, True)])
def test_the_clients_edns0_size_is_honoured(tmp_path, bufsize, max_udp, truncated):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address], max_udp_size=max_udp)
            await ask(svc, BIG_NAME, tcp=True)                           # fill the cache
            reply, size = await ask(svc, BIG_NAME, use_edns=0, payload=bufsize)
            limit = min(max(512, bufsize), max_udp)
            assert size <= limit
            assert bool(reply.flags & dns.flags.TC) == truncated
            assert reply.edns == 0 and reply.payload == max_udp         # OPT kept, even truncated
            assert (len(reply.answer[0]) == BIG_COUNT) != truncated
    run(go())


def test_render_keeps_whole_records_and_sets_tc_only_for_answer_and_authority():
    query = dns.message.make_query("big.test", "A", use_edns=0)
    msg = dns.message.make_response(query)
    rrset = dns.rrset.from_text_list("big.test.", 60, "IN", "A", [f"10.0.{i // 200}.{i % 200}" for i in range(300)])
    msg.answer.append(rrset)
    wire, truncated = render(msg, 512)
    parsed = dns.message.from_wire(wire)
    assert truncated and parsed.flags & dns.flags.TC and len(wire) <= 512
    assert 0 < len(parsed.answer[0]) < 300 and parsed.opt is not None
    # The same records counted again at the next limit: a prefix, every record whole.
    bigger, _ = render(msg, 1024)
    assert len(dns.message.from_wire(bigger).answer[0]) > len(parsed.answer[0])
    # What only the additional section cannot hold is left out without TC (RFC 2181 §9).
    msg2 = dns.message.make_response(query)
    msg2.answer.append(dns.rrset.from_text("big.test.", 60, "IN", "A", "10.0.0.1"))
    msg2.additional.append(rrset)
    wire, truncated = render(msg2, 512)
    assert not truncated and not dns.message.from_wire(wire).flags & dns.flags.TC
    # Small enough: untouched.
    small = dns.message.make_response(query)
    assert render(small, 512) == (small.to_wire(), False)


def test_upstream_tcp_refused_passes_the_truncated_answer_on_uncached(tmp_path):
    async def go():
        with Authority() as auth:
            auth.tcp_enabled = False
            svc = make_service(tmp_path, [auth.address])
            reply, _ = await ask(svc, BIG_NAME)
            assert reply.flags & dns.flags.TC
            assert len(svc.cache) == 0
            assert svc.stats()["upstream"]["tcp_failures"] == 1
    run(go())


# -- the cache ---------------------------------------------------------------------------------------

def test_cached_answers_count_their_ttl_down_and_expire(tmp_path):
    async def go():
        clock = Clock()
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address], clock=clock, watch_interval=1e9)
            reply, _ = await ask(svc, "short.example.test")            # TTL 5
            assert reply.answer[0].ttl == 5
            clock.now += 2
            reply, _ = await ask(svc, "short.example.test")
            assert reply.answer[0].ttl == 3 and len(auth.queries) == 1
            assert not reply.flags & dns.flags.AA
            clock.now += 3.5
            reply, _ = await ask(svc, "short.example.test")
            assert reply.answer[0].ttl == 5 and len(auth.queries) == 2
            # Negative answers live min(SOA TTL, SOA MINIMUM) = 60 s (RFC 2308 §5).
            await ask(svc, "missing.example.test")
            clock.now += 59
            reply, _ = await ask(svc, "missing.example.test")
            assert reply.rcode() == dns.rcode.NXDOMAIN and len(auth.queries) == 3
            assert reply.authority[0].ttl == 1
            clock.now += 1
            await ask(svc, "missing.example.test")
            assert len(auth.queries) == 4
            # The key includes DO: a DNSSEC-wanting client is not served a DO=0 answer.
            await ask(svc, "short.example.test", use_edns=0, want_dnssec=True)
            assert len(auth.queries) == 5
    run(go())


def test_answer_ttl_rules():
    query = dns.message.make_query("x.test", "A")
    ok = dns.message.make_response(query)
    ok.answer.append(dns.rrset.from_text("x.test.", 30, "IN", "A", "10.0.0.1"))
    ok.additional.append(dns.rrset.from_text("y.test.", 10, "IN", "A", "10.0.0.2"))
    assert answer_ttl(ok) == 10
    tc = dns.message.make_response(query)
    tc.flags |= dns.flags.TC
    tc.answer = ok.answer
    assert answer_ttl(tc) is None
    fail = dns.message.make_response(query)
    fail.set_rcode(dns.rcode.SERVFAIL)
    assert answer_ttl(fail) is None
    nosoa = dns.message.make_response(query)
    nosoa.set_rcode(dns.rcode.NXDOMAIN)
    assert answer_ttl(nosoa) is None
    huge = dns.message.make_response(query)
    huge.answer.append(dns.rrset.from_text("x.test.", 2**31, "IN", "A", "10.0.0.1"))
    assert answer_ttl(huge) is None          # RFC 2181 §8: top bit set means zero
    zero = dns.message.make_response(query)
    zero.answer.append(dns.rrset.from_text("x.test.", 0, "IN", "A", "10.0.0.1"))
    assert answer_ttl(zero) is None


def test_cache_evicts_least_recently_used():
    clock = Clock()
    cache = AnswerCache(size=2, max_ttl=100, clock=clock)
    queries = [dns.message.make_query(f"n{i}.test", "A") for i in range(3)]
    for q in queries:
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 1000, "IN", "A", "10.0.0.1"))
        assert cache.put(cache_key(q), r) == 100          # capped at max_ttl
        if q is queries[1]:
            assert cache.get(cache_key(queries[0]), queries[0], our_payload=1232) is not None
    assert cache.get(cache_key(queries[1]), queries[1], our_payload=1232) is None
    assert cache.get(cache_key(queries[0]), queries[0], our_payload=1232) is not None
    assert cache.stats()["evictions"] == 1


# -- malformed input -------------------------------------------------------------------------------

def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x04host\x06docker\x08internal\x00\x00\x01\x00\x01"


@pytest.mark.parametrize("wire,expect", [
    (b"", None), (b"\x12\x34\x01", None), (header()[:11], None),                 # no header: dropped
    (header(flags=0x8100) + QUESTION, None),                                      # a response: dropped
    (header() + QUESTION[:7], dns.rcode.FORMERR),                                 # name runs off the end
    (header() + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),                  # pointer to itself
    (header() + b"\x01a\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),             # loop through a label
    (header() + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 20, dns.rcode.FORMERR),   # forward pointer
    (header() + b"\x80abc\x00\x00\x01\x00\x01", dns.rcode.FORMERR),               # reserved label type
    (header() + QUESTION + b"junk", dns.rcode.FORMERR),                           # trailing bytes
    (header(qd=2) + QUESTION + QUESTION, dns.rcode.FORMERR),                      # two questions
    (header(qd=0), dns.rcode.FORMERR),                                            # none
    (header(flags=0x2800) + QUESTION[:-4] + b"\x00\x06\x00\x01", dns.rcode.NOTIMP),  # UPDATE (zone: SOA)
    (header(flags=0x2000) + QUESTION, dns.rcode.NOTIMP),                          # NOTIFY
    (header(flags=0x1000) + QUESTION, dns.rcode.NOTIMP),                          # STATUS
])
def test_malformed_queries_get_formerr_or_are_dropped(tmp_path, wire, expect):
    async def go():
        svc = make_service(tmp_path)
        reply = await svc.answer(wire)
        if expect is None:
            assert reply is None
            assert svc.stats()["malformed_dropped"] == 1
        else:
            parsed = dns.message.from_wire(reply)
            assert parsed.rcode() == expect and parsed.id == 0x1234 and parsed.flags & dns.flags.QR
        assert svc.stats()["internal_errors"] == 0
        reply, _ = await ask(svc, "host.docker.internal")       # and it still answers
        assert addresses(reply) == [HOST_ALIAS]
    run(go())


def test_edns_version_other_than_zero_is_badvers(tmp_path):
    async def go():
        svc = make_service(tmp_path)
        reply, _ = await ask(svc, "host.docker.internal", use_edns=1)
        assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0
    run(go())


def test_zone_transfers_are_not_relayed(tmp_path):
    async def go():
        svc = make_service(tmp_path)
        reply, _ = await ask(svc, "example.test", "AXFR")
        assert reply.rcode() == dns.rcode.NOTIMP
    run(go())


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_never_break_the_service(data):
    async def go():
        svc = DnsService(NetworkConfig(dns_service=DnsConfig(resolv_conf="/nonexistent", hosts_file=None,
                                                             system_fallback=False, timeout=0.2,
                                                             retry_interval=0.1)),
                         loop=asyncio.get_running_loop())
        reply = await svc.answer(data)
        if reply is not None:
            parsed = dns.message.from_wire(reply)
            assert parsed.id == struct.unpack("!H", data[:2])[0] and parsed.flags & dns.flags.QR
        stats = svc.stats()
        assert stats["internal_errors"] == 0
        assert stats["queries"] == 1
    run(go())


# -- the transports: socketpairs as the forwarder hands them over ------------------------------------

def test_udp_flow_answers_each_datagram_and_is_closed_when_idle(tmp_path):
    async def go():
        loop = asyncio.get_running_loop()
        svc = make_service(tmp_path)
        svc.udp_idle = 0.3        # the network sets it from its udp_idle; short for the test
        guest, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        guest.setblocking(False)
        svc.serve_udp(ours, ("192.168.65.3", 40000, GATEWAY, 53))
        for i, name in enumerate(HOST_NAMES):
            guest.send(dns.message.make_query(name, "A", id=i).to_wire())
        got = {}
        while len(got) < len(HOST_NAMES):
            data = await asyncio.wait_for(loop.sock_recv(guest, 65535), 5)
            reply = dns.message.from_wire(data)
            got[reply.id] = addresses(reply)
        assert all(v == [HOST_ALIAS] for v in got.values())
        guest.send(b"\x00\x01garbage")
        await asyncio.sleep(0.1)
        assert svc.stats()["malformed_formerr"] + svc.stats()["malformed_dropped"] == 1
        await asyncio.sleep(0.8)
        assert svc.stats()["open_udp_flows"] == 0 and ours.fileno() == -1
        guest.close()
    run(go())


def test_tcp_queries_on_one_connection_are_answered_concurrently(tmp_path):
    async def go():
        with Authority() as auth:
            auth.delay = 0.3
            svc = make_service(tmp_path, [auth.address])
            guest, ours = socket.socketpair()
            ours.setblocking(False)
            svc.serve_tcp(ours, ("192.168.65.3", 40000, GATEWAY, 53))
            reader, writer = await asyncio.open_connection(sock=guest)
            slow = dns.message.make_query("www.example.test", "A", id=1).to_wire()
            fast = dns.message.make_query("host.docker.internal", "A", id=2).to_wire()
            stream = struct.pack("!H", len(slow)) + slow + struct.pack("!H", len(fast)) + fast
            for i in range(len(stream)):               # one byte at a time: framing must cope
                writer.write(stream[i:i + 1])
                await writer.drain()
            order = []
            for _ in range(2):
                (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
                order.append(dns.message.from_wire(await reader.readexactly(n)).id)
            assert order == [2, 1]                     # the local answer did not wait for upstream
            writer.close()
            await asyncio.sleep(0.05)
            assert svc.stats()["open_tcp_connections"] == 0
    run(go())


def test_close_stops_everything(tmp_path):
    async def go():
        with Authority() as auth:
            auth.mode = "silent"
            svc = make_service(tmp_path, [auth.address], timeout=5)
            guest, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            ours.setblocking(False)
            svc.serve_udp(ours, ("192.168.65.3", 40000, GATEWAY, 53))
            guest.send(dns.message.make_query("www.example.test", "A").to_wire())
            await asyncio.sleep(0.1)
            assert svc.stats()["in_flight"] == 1
            svc.close()
            await asyncio.sleep(0.05)
            assert ours.fileno() == -1 and svc.stats()["in_flight"] == 0
            guest.close()
    run(go())


def test_stats_count_queries_rcodes_and_upstream_latency(tmp_path):
    async def go():
        with Authority() as auth:
            svc = make_service(tmp_path, [auth.address])
            await ask(svc, "host.docker.internal")
            await ask(svc, "www.example.test")
            await ask(svc, "missing.example.test")
            stats = svc.stats()
            json.dumps(stats)
            assert stats["queries"] == 3 and stats["udp_queries"] == 3
            assert stats["rcodes"] == {"NOERROR": 2, "NXDOMAIN": 1}
            assert stats["from_local"] == 1 and stats["from_upstream"] == 2
            lat = stats["upstream"]["latency"]
            assert lat["count"] == 2 and lat["avg_ms"] > 0 and sum(lat["histogram"].values()) == 2
    run(go())
