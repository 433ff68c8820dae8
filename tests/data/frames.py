"""Golden frames: named byte constants, built once with scapy 2.8 and pasted in as hex.

Each constant is split by layer (one string per header, with a comment naming it), so a
byte offset can be read off by eye. tests/wire/test_golden.py holds the scapy expression for
every frame and checks that scapy still builds these exact bytes; the constants themselves
do not need scapy.

Addresses used throughout: the guest is 52:54:00:12:34:56 / 10.0.2.15 / fd00::15, the
gateway 52:55:0a:00:02:02 / 10.0.2.2, the remote host 93.184.216.34 / 2001:db8::1.
"""

# who-has 10.0.2.2 tell 10.0.2.15 (broadcast, 42 bytes: as sent, before NIC padding)
ARP_REQUEST = bytes.fromhex(
    "ffffffffffff5254001234560806"  # Ethernet II
    "00010800060400015254001234560a00020f0000000000000a000202"  # ARP
)

# 10.0.2.2 is-at 52:55:0a:00:02:02, padded to the 60-byte Ethernet minimum
ARP_REPLY = bytes.fromhex(
    "52540012345652550a0002020806"  # Ethernet II
    "000108000604000252550a0002020a0002025254001234560a00020f"  # ARP
    "000000000000000000000000000000000000"  # Ethernet padding
)

# 10.0.2.15:40312 > 93.184.216.34:80 SYN, DF; options as Linux lays them out:
# MSS 1460, SACK-permitted, TS 2216503153/0, NOP, WS 7
TCP4_SYN = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "4500003c3a1c40004006beb60a00020f5db8d822"  # IPv4
    "9d7800501f2e3d4c00000000a002faf065540000020405b40402080a841d2771"  # TCP
    "0000000001030307"
)

# the HTTP request after the handshake: PSH|ACK, NOP NOP TS, 37 bytes of data
TCP4_DATA = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "450000593a1d40004006be980a00020f5db8d822"  # IPv4
    "9d7800501f2e3d4d8a9b0c1e801801f6a3b200000101080a841d27964f8bba1c"  # TCP
    "474554202f20485454502f312e310d0a486f73743a206578616d706c652e636f"  # payload
    "6d0d0a0d0a"
)

# the server's ACK with NOP NOP TS and NOP NOP SACK (two blocks)
TCP4_SACK = bytes.fromhex(
    "52540012345652550a0002020800"  # Ethernet II
    "4500004800004000380600c75db8d8220a00020f"  # IPv4
    "00509d788a9b0c1e1f2e3d72d01001f5f6ef00000101080a4f8bba74841d2796"  # TCP
    "010105121f2e40001f2e45b41f2e4b681f2e511c"
)

# DNS A query for example.com, 10.0.2.15:53535 > 10.0.2.3:53
UDP4_DNS = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "450000395c2e0000401106750a00020f0a000203"  # IPv4
    "d11f00350025349c"  # UDP
    "123401000001000000000000076578616d706c6503636f6d0000010001"  # DNS query (UDP payload)
)

# ping: echo request id 0x1c46 seq 1, 56 data bytes 0x10..0x47
ICMP4_ECHO = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "450000548e01400040016abe0a00020f5db8d822"  # IPv4
    "080022e41c460001"  # ICMPv4
    "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"  # payload
    "303132333435363738393a3b3c3d3e3f4041424344454647"
)

# IHL 7: Router Alert + NOP NOP NOP EOL, then UDP 5353 > 5353 "fastnet"
IPV4_OPTIONS = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "47c0002b00010000011134d70a00020fe00000169404000001010100"  # IPv4
    "14e914e9000f2d9d"  # UDP
    "666173746e6574"  # payload
)

# first fragment (MF, offset 0) of a 108-byte UDP datagram cut at 64 bytes
IPV4_FRAG_FIRST = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "45000054abcd200040116ce20a00020f5db8d822"  # IPv4
    "829a829b006c1c29"  # UDP
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # payload
    "202122232425262728292a2b2c2d2e2f3031323334353637"
)

# the last fragment of the same datagram (offset 8 units = 64 bytes, no MF)
IPV4_FRAG_LATER = bytes.fromhex(
    "52550a0002025254001234560800"  # Ethernet II
    "45000040abcd000840118cee0a00020f5db8d822"  # IPv4
    "38393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f5051525354555657"  # payload
    "58595a5b5c5d5e5f60616263"
)

# 802.1Q PCP 3 VID 100, UDP 192.168.100.15:40000 > 192.168.100.1:9999 "hello, vlan"
VLAN_UDP4 = bytes.fromhex(
    "52550a0002025254001234568100"  # Ethernet II
    "60640800"  # 802.1Q
    "450000270042000040113123c0a8640fc0a86401"  # IPv4
    "9c40270f0013b440"  # UDP
    "68656c6c6f2c20766c616e"  # payload
)

# [2001:db8::1]:443 > [fd00::15]:51234 SYN|ACK, flow label 0x4f2a1, hop limit 60;
# MSS 1440, SACK-permitted, TS 3001002003/4001002003, NOP, WS 9
TCP6_SYNACK = bytes.fromhex(
    "52540012345652550a00020286dd"  # Ethernet II
    "6004f2a10028063c20010db8000000000000000000000001fd00000000000000"  # IPv6
    "0000000000000015"
    "01bbc822deadbeef01020305a012fe88f7a50000020405a00402080ab2dfa813"  # TCP
    "ee7a721301030309"
)

# UDP [fd00::15]:45000 > [2001:db8::1]:443, traffic class 0x28, flow label 0x12345
UDP6 = bytes.fromhex(
    "52550a00020252540012345686dd"  # Ethernet II
    "6281234500161140fd00000000000000000000000000001520010db800000000"  # IPv6
    "0000000000000001"
    "afc801bb0016e6bb"  # UDP
    "c00000000108717569632d697368"  # payload
)

# ping6: echo request id 0x7a7a seq 3, data "fastnet-ping-six"
ICMP6_ECHO = bytes.fromhex(
    "52550a00020252540012345686dd"  # Ethernet II
    "6000000000183a40fd00000000000000000000000000001520010db800000000"  # IPv6
    "0000000000000001"
    "8000a83a7a7a0003666173746e65742d70696e672d736978"  # ICMPv6 echo request
)

# hop-by-hop (Router Alert) then destination options (PadN) then UDP 546 > 547 to ff02::16
IPV6_EXT_UDP = bytes.fromhex(
    "52550a00020252540012345686dd"  # Ethernet II
    "60000000001e0001fd000000000000000000000000000015ff02000000000000"  # IPv6
    "0000000000000016"
    "3c00050200000100"  # IPv6 hop-by-hop options
    "1100010400000000"  # IPv6 destination options
    "02220223000ec14f"  # UDP
    "646863707636"  # payload
)

# first fragment (offset 0, M=1, id 0x11223344) of a 128-byte UDP datagram
IPV6_FRAG_FIRST = bytes.fromhex(
    "52550a00020252540012345686dd"  # Ethernet II
    "6000000000502c40fd00000000000000000000000000001520010db800000000"  # IPv6
    "0000000000000001"
    "1100000111223344"  # IPv6 fragment header
    "c350c35100806b5e"  # UDP
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # payload
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
)

# the last fragment of the same datagram (offset 9 units = 72 bytes, M=0)
IPV6_FRAG_LATER = bytes.fromhex(
    "52550a00020252540012345686dd"  # Ethernet II
    "6000000000402c40fd00000000000000000000000000001520010db800000000"  # IPv6
    "0000000000000001"
    "1100004811223344"  # IPv6 fragment header
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"  # payload
    "606162636465666768696a6b6c6d6e6f7071727374757677"
)

# EtherType 0x88b5 (IEEE local experimental): not looked into
UNKNOWN_ETHERTYPE = bytes.fromhex(
    "ffffffffffff52540012345688b5"  # Ethernet II
    "666173746e6574206c6f63616c206578706572696d656e74616c206574686572"  # payload
    "7479706500000000000000000000"
)

# a bare 40-byte IPv4/TCP ACK padded with 6 zero bytes to the 60-byte minimum
PADDED_TCP4_ACK = bytes.fromhex(
    "52540012345652550a0002020800"  # Ethernet II
    "450000281d2e40003806e3b85db8d8220a00020f"  # IPv4
    "00509d788a9b0c1e1f2e3d72501001f5dad30000"  # TCP
    "000000000000"  # Ethernet padding
)


# name -> bytes, in the order above (for parametrize ids).
ALL = {
    "ARP_REQUEST": ARP_REQUEST,
    "ARP_REPLY": ARP_REPLY,
    "TCP4_SYN": TCP4_SYN,
    "TCP4_DATA": TCP4_DATA,
    "TCP4_SACK": TCP4_SACK,
    "UDP4_DNS": UDP4_DNS,
    "ICMP4_ECHO": ICMP4_ECHO,
    "IPV4_OPTIONS": IPV4_OPTIONS,
    "IPV4_FRAG_FIRST": IPV4_FRAG_FIRST,
    "IPV4_FRAG_LATER": IPV4_FRAG_LATER,
    "VLAN_UDP4": VLAN_UDP4,
    "TCP6_SYNACK": TCP6_SYNACK,
    "UDP6": UDP6,
    "ICMP6_ECHO": ICMP6_ECHO,
    "IPV6_EXT_UDP": IPV6_EXT_UDP,
    "IPV6_FRAG_FIRST": IPV6_FRAG_FIRST,
    "IPV6_FRAG_LATER": IPV6_FRAG_LATER,
    "UNKNOWN_ETHERTYPE": UNKNOWN_ETHERTYPE,
    "PADDED_TCP4_ACK": PADDED_TCP4_ACK,
}
