"""Building replies: a response skeleton that echoes what the query asked for, a copy of a
stored answer for a new query, the header-only FORMERR for a query that does not parse, and
rendering to a size limit with truncation done by whole records.

dnspython does the encoding; what is here is the DNS rules on top of it."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rrset

# RFC 1035 §4.2.1: without EDNS0 a UDP message is at most 512 bytes; RFC 6891 §6.2.5: an EDNS0
# size below 512 is treated as 512.
CLASSIC_UDP_SIZE = 512
# RFC 1035 §4.2.2: a TCP message is prefixed by a 16-bit length.
MAX_TCP_SIZE = 65535
MAX_WIRE_TTL = 2**31 - 1


def new_response(query: dns.message.Message, our_payload: int) -> dns.message.Message:
    """A response to query with RA set (the service recurses for the guest): the question
    echoed, and an OPT record advertising our_payload if the query had one (RFC 6891 §7), with DO
    copied back (RFC 3225 §3)."""
    response = dns.message.make_response(query, recursion_available=True, our_payload=our_payload)
    if query.edns >= 0:
        response.ednsflags |= query.ednsflags & dns.flags.DO
    return response


def reply_from(stored: dns.message.Message, query: dns.message.Message, *, age: int = 0,
               life: int = MAX_WIRE_TTL, our_payload: int) -> dns.message.Message:
    """A response to query carrying stored's rcode and records, TTLs reduced by age seconds and
    none above life, what is left of the stored answer's life (a negative answer's SOA may say
    300 while the answer is good for its MINIMUM of 60, RFC 2308 §5).
    It is never authoritative (AA off); AD goes only to a client that asked for it, by AD or DO
    (RFC 6840 §5.7-5.8)."""
    response = new_response(query, our_payload)
    response.set_rcode(stored.rcode())
    # A truncated answer (passed on when TCP to the server failed) stays marked as such.
    response.flags |= stored.flags & dns.flags.TC
    if stored.flags & dns.flags.AD and (query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO):
        response.flags |= dns.flags.AD
    for src, dst in ((stored.answer, response.answer), (stored.authority, response.authority),
                     (stored.additional, response.additional)):
        for rrset in src:
            copy = rrset.copy()
            copy.ttl = max(0, min(min(rrset.ttl, MAX_WIRE_TTL) - age, life))
            dst.append(copy)
    return response


def header_reply(wire: bytes, rcode: int) -> bytes | None:
    """A header-only reply (no sections) to a query that could not be parsed: its ID, opcode and
    RD echoed, QR set (RFC 1035 §4.1.1). None when there is not even a header to answer, or when
    the message is itself a response (answering it could start a loop between two servers)."""
    if len(wire) < 12:
        return None
    qid, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    reply = dns.message.Message(id=qid)
    reply.flags = dns.flags.QR | (flags & dns.flags.RD)
    reply.set_opcode(dns.opcode.from_flags(flags))
    reply.set_rcode(rcode)
    return reply.to_wire()


def _one_per_record(rrsets: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    out = []
    for rrset in rrsets:
        for rdata in rrset:
            single = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
            single.add(rdata, rrset.ttl)
            out.append(single)
    return out


def render(msg: dns.message.Message, limit: int) -> tuple[bytes, bool]:
    """msg's wire form in at most limit bytes, and whether it had to be truncated.

    Truncation keeps whole records, as many as fit in section order (RFC 2181 §9: a partial
    RRset may be left in; RFC 1035 §7.3: what is there must be whole), sets TC when answer or
    authority records had to go, and keeps the OPT record, which must be in every response to an
    EDNS0 query, truncated or not (RFC 6891 §7). Records left out of the additional section alone
    do not set TC (RFC 2181 §9)."""
    wire = msg.to_wire(max_size=MAX_TCP_SIZE, prefer_truncation=True)
    if len(wire) <= limit:
        return wire, False
    split = dns.message.Message(id=msg.id)
    split.flags = msg.flags
    split.question = msg.question
    split.answer = _one_per_record(msg.answer)
    split.authority = _one_per_record(msg.authority)
    split.additional = _one_per_record(msg.additional)
    if msg.opt is not None:
        split.use_edns(msg.edns, msg.ednsflags, msg.payload, options=list(msg.options))
    wire = split.to_wire(max_size=limit, prefer_truncation=True)
    return wire, bool(struct.unpack("!H", wire[2:4])[0] & dns.flags.TC)
