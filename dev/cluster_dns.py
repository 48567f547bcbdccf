#!/usr/bin/env python3
"""A tiny cluster DNS for the harness's node: Service names to ClusterIPs, nothing else.

No CoreDNS image can be pulled here, and pods must not resolve anything outside the
cluster (the host's resolver is off the machine). This answers A queries for
`<service>.<namespace>.svc.<domain>` from the API server's Service list (refreshed at
most once a second, on a miss), NOERROR without records for other types of a known
name, NXDOMAIN for any other name in the domain and REFUSED outside it. It never
forwards a query.

Standard library only (it runs inside the node's network namespace, from dev/node.py):

    python3 dev/cluster_dns.py --listen 10.244.0.2 --api https://10.244.0.1:PORT \\
        --ca ca.crt --cert admin.crt --key admin.key
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

TYPE_A = 1
CLASS_IN = 1
NOERROR, NXDOMAIN, REFUSED, FORMERR = 0, 3, 5, 1
TTL = 5


class Services:
    """ClusterIPs by fully qualified Service name, listed from the API server."""

    def __init__(self, fetch: Callable[[], list[dict[str, object]]], domain: str) -> None:
        self._fetch = fetch
        self.domain = domain.strip(".").lower()
        self._names: dict[str, str] = {}
        self._listed_at = 0.0
        self._lock = threading.Lock()

    def refresh(self, max_age: float) -> None:
        with self._lock:
            if time.monotonic() - self._listed_at < max_age:
                return
            names: dict[str, str] = {}
            for item in self._fetch():
                meta = item.get("metadata") or {}
                spec = item.get("spec") or {}
                assert isinstance(meta, dict) and isinstance(spec, dict)
                address = spec.get("clusterIP")
                if not address or address == "None":
                    continue  # headless: not served here
                names[f"{meta['name']}.{meta['namespace']}.svc.{self.domain}"] = str(address)
            self._names = names
            self._listed_at = time.monotonic()

    def lookup(self, name: str) -> str | None:
        name = name.rstrip(".").lower()
        address = self._names.get(name)
        if address is None:
            self.refresh(max_age=1.0)  # a Service made a moment ago
            address = self._names.get(name)
        return address

    def in_domain(self, name: str) -> bool:
        name = name.rstrip(".").lower()
        return name == self.domain or name.endswith("." + self.domain)


def parse_question(message: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, name, qtype, qclass, end offset of the question)."""
    if len(message) < 12:
        raise ValueError("short message")
    ident, flags, qdcount = struct.unpack("!HHH", message[:6])
    if qdcount != 1:
        raise ValueError("one question expected")
    labels, offset = [], 12
    while True:
        length = message[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed question name")
        labels.append(message[offset:offset + length].decode("ascii"))
        offset += length
    qtype, qclass = struct.unpack("!HH", message[offset:offset + 4])
    return ident, flags, ".".join(labels), qtype, qclass, offset + 4


def answer(message: bytes, services: Services) -> bytes:
    try:
        ident, flags, name, qtype, qclass, end = parse_question(message)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        ident = struct.unpack("!H", message[:2])[0] if len(message) >= 2 else 0
        return struct.pack("!HHHHHH", ident, 0x8000 | FORMERR, 0, 0, 0, 0)
    question = message[12:end]
    rd = flags & 0x0100
    address = services.lookup(name) if services.in_domain(name) else None
    if not services.in_domain(name):
        rcode = REFUSED
    elif address is None:
        rcode = NXDOMAIN
    else:
        rcode = NOERROR
    records = b""
    if address is not None and qtype == TYPE_A and qclass == CLASS_IN:
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
        records += ipaddress.IPv4Address(address).packed
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | rcode, 1,
                         1 if records else 0, 0, 0)
    return header + question + records


def api_fetcher(api: str, ca: str, cert: str, key: str) -> Callable[[], list[dict[str, object]]]:
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)

    def fetch() -> list[dict[str, object]]:
        with urllib.request.urlopen(f"{api}/api/v1/services", context=context,
                                    timeout=5) as response:
            items = json.load(response)["items"]
        assert isinstance(items, list)
        return items
    return fetch


def serve(listen: str, port: int, services: Services) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((listen, port))
    print(f"cluster-dns: answering for *.svc.{services.domain} on {listen}:{port}",
          flush=True)
    while True:
        message, peer = udp.recvfrom(512)
        try:
            udp.sendto(answer(message, services), peer)
        except Exception as exc:  # one bad query or an API hiccup never stops the server
            print(f"cluster-dns: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--api", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--domain", default="cluster.local")
    args = parser.parse_args()
    services = Services(api_fetcher(args.api, args.ca, args.cert, args.key), args.domain)
    services.refresh(max_age=0)
    serve(args.listen, args.port, services)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
