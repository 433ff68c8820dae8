"""Services on the virtual network: configuration, addressing, NAT policy, DHCP, DNS, proxy,
published ports. Python, per flow event; the frames themselves stay in C."""
