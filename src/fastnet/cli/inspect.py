"""``fastnet inspect [PCAP]``: classify and checksum every frame of a capture.

Without a file it inspects a built-in sample capture (one frame of each kind fastnet parses,
plus two malformed ones), which shows the wire layer at work on a machine with nothing else.
"""

from __future__ import annotations

import collections
import io
import ipaddress

from fastnet import pcap, wire

_GUEST_MAC = bytes.fromhex("020000000003")
_GW_MAC = bytes.fromhex("f61636bcf9c6")
_GUEST = ipaddress.IPv4Address("192.168.65.3")
_GW = ipaddress.IPv4Address("192.168.65.1")
_HOST = ipaddress.IPv4Address("192.168.65.2")
_G6 = ipaddress.IPv6Address("fd00::3")
_H6 = ipaddress.IPv6Address("fd00::2")


def sample_frames() -> list[bytes]:
    """A small deterministic capture: ARP, TCP handshake with options, data, UDP (DNS-like),
    ICMP echo, IPv6 TCP, a VLAN tag, an IPv4 fragment, and two malformed frames."""
    eth = wire.EthernetFields(_GW_MAC, _GUEST_MAC, wire.ETHERTYPE_IPV4)
    ip = wire.Ipv4Fields(_GUEST, _HOST, wire.IPPROTO_TCP, ttl=64, ident=1, dont_fragment=True)
    frames = [
        wire.build_frame(wire.EthernetFields(b"\xff" * 6, _GUEST_MAC, wire.ETHERTYPE_ARP),
                         arp=wire.ArpFields(1, _GUEST_MAC, _GUEST, b"\0" * 6, _GW)),
        wire.build_frame(eth, ip, wire.TcpFields(40000, 80, seq=1000, flags=wire.TcpFlags.SYN, window=64240,
                                                 mss=1460, window_scale=7, sack_permitted=True,
                                                 timestamps=(1, 0))),
        wire.build_frame(eth, ip, wire.TcpFields(40000, 80, seq=1001, ack=5001,
                                                 flags=wire.TcpFlags.ACK | wire.TcpFlags.PSH, window=502,
                                                 timestamps=(2, 7)),
                         b"GET / HTTP/1.1\r\nHost: host.docker.internal\r\n\r\n"),
        wire.build_frame(eth, wire.Ipv4Fields(_GUEST, _GW, wire.IPPROTO_UDP, ident=2),
                         wire.UdpFields(53000, 53), bytes.fromhex("12340100000100000000000004686f7374") + b"\0\0\1\0\1"),
        wire.build_frame(eth, wire.Ipv4Fields(_GUEST, _GW, wire.IPPROTO_ICMP, ident=3),
                         wire.IcmpFields(8, 0, (0x1234 << 16) | 1), bytes(range(56))),
        wire.build_frame(wire.EthernetFields(_GW_MAC, _GUEST_MAC, wire.ETHERTYPE_IPV6),
                         wire.Ipv6Fields(_G6, _H6, wire.IPPROTO_TCP),
                         wire.TcpFields(40001, 443, seq=7, ack=9, flags=wire.TcpFlags.ACK, window=1000,
                                        sack_blocks=((100, 200),)), b"x" * 100),
        wire.build_frame(wire.EthernetFields(_GW_MAC, _GUEST_MAC, wire.ETHERTYPE_IPV4, vlan_tci=100),
                         wire.Ipv4Fields(_GUEST, _HOST, wire.IPPROTO_UDP, ident=4), wire.UdpFields(1234, 5678), b"vlan"),
        wire.build_frame(eth, wire.Ipv4Fields(_GUEST, _HOST, wire.IPPROTO_UDP, ident=5, more_fragments=True),
                         None, b"\0" * 64),
    ]
    bad_len = bytearray(frames[2])
    bad_len[14 + 2:14 + 4] = (9000).to_bytes(2, "big")  # IPv4 total length beyond the frame
    frames.append(bad_len)
    bad_doff = bytearray(frames[2])
    bad_doff[14 + 20 + 12] = 0x40  # TCP data offset 4 words: shorter than the fixed header
    frames.append(bad_doff)
    return [bytes(f) for f in frames]


def flag_names(flags: int) -> str:
    names = [f.name for f in wire.TcpFlags if flags & f]
    return "|".join(n for n in names if n) or "none"


def sample_pcap() -> bytes:
    buf = io.BytesIO()
    w = pcap.PcapWriter(buf)
    for i, f in enumerate(sample_frames()):
        w.write(f, ts=1_700_000_000 + i / 1000)
    return buf.getvalue()


def _describe(fr: wire.Frame) -> str:
    ip, l4 = fr.ip, fr.l4
    if fr.kind == wire.Kind.ARP:
        a = fr.arp
        return f"ARP {'request' if a.oper == 1 else 'reply' if a.oper == 2 else a.oper} {a.spa} -> {a.tpa}"
    if ip is None:
        return f"ethertype 0x{fr.ethertype:04x}"
    where = f"{ip.src} -> {ip.dst}"
    if isinstance(l4, wire.TcpPacket):
        opts = []
        if l4.mss is not None:
            opts.append(f"mss={l4.mss}")
        if l4.window_scale is not None:
            opts.append(f"wscale={l4.window_scale}")
        if l4.sack_permitted:
            opts.append("sackOK")
        if l4.timestamps:
            opts.append("ts")
        if l4.sack_blocks:
            opts.append(f"sack={list(l4.sack_blocks)}")
        flags = flag_names(int(l4.flags))
        return (f"TCP {ip.src}:{l4.src_port} -> {ip.dst}:{l4.dst_port} [{flags}] seq={l4.seq} "
                f"len={fr.payload_len}" + (f" {' '.join(opts)}" if opts else ""))
    if isinstance(l4, wire.UdpPacket):
        return f"UDP {ip.src}:{l4.src_port} -> {ip.dst}:{l4.dst_port} len={fr.payload_len}"
    if isinstance(l4, (wire.Icmpv4Packet, wire.Icmpv6Packet)):
        return f"ICMP {where} type={l4.type} code={l4.code}"
    if fr.is_fragment:
        return f"IP fragment {where} proto={fr.l4_proto} offset={fr.frag_offset * 8} more={fr.more_fragments}"
    return f"IP {where} proto={fr.l4_proto}"


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="classify and checksum the frames of a pcap capture (default: built-in sample)")
    p.add_argument("pcap", nargs="?", help="pcap file with Ethernet frames (default: a built-in sample)")
    p.add_argument("--write-sample", metavar="FILE", help="also write the built-in sample capture to FILE")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.pcap:
        frames = pcap.read_frames(args.pcap)
        source = args.pcap
    else:
        data = sample_pcap()
        frames = pcap.read_frames(data)
        source = "built-in sample"
        if args.write_sample:
            with open(args.write_sample, "wb") as f:
                f.write(data)
    kinds: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    bad_sums = 0
    print(f"{source}: {len(frames)} frames")
    for i, raw in enumerate(frames, 1):
        try:
            fr = wire.parse_frame(raw)
        except wire.MalformedPacket as e:
            errors[e.reason] += 1
            print(f"{i:4d} {len(raw):6d}  malformed: {e.reason}")
            continue
        ok = fr.verify_checksums()
        bad_sums += not ok
        kinds[wire.kind_name(fr.kind)] += 1
        print(f"{i:4d} {len(raw):6d}  {_describe(fr)}  checksum {'ok' if ok else 'BAD'}")
    # The same capture through the batch classifier, as a link would see it on a stream socket
    # (2-byte little-endian length prefixes, HyperKit's framing): one C call for all frames.
    stream = b"".join(len(f).to_bytes(2, "little") + f for f in frames)
    summaries, consumed = wire.classify_stream(stream, prefix=2, byteorder="little")
    batch_ok = int((summaries["status"] == 0).sum())
    print(f"kinds: {', '.join(f'{k}={n}' for k, n in sorted(kinds.items()))}")
    print(f"malformed: {sum(errors.values())}, bad checksums: {bad_sums}")
    print(f"batch classify: {len(summaries)} frames, {batch_ok} valid, {consumed}/{len(stream)} bytes consumed")
    return 0
