"""Loopback addresses: what the service, the gateway simulator and the metrics server
bind without further ado (reachable from this machine only)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (IPv4 127.0.0.0/8, IPv6 ::1, also
    written ``[::1]``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False
