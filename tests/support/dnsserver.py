"""A scriptable DNS server for DNSBL tests: listed, unlisted, slow and failing lists.

It runs on a loopback UDP port in a thread of its own, parses and builds messages with
dnspython, and counts the queries it gets (to check caching and that local addresses
are never looked up).  Each zone has a behaviour:

* ``"records"`` -- names in :attr:`records` answer with their A records and TTL,
  anything else in the zone is NXDOMAIN (with an SOA, so it can be cached);
* ``"servfail"`` / ``"refused"`` -- that rcode for everything;
* ``"slow:<seconds>"`` -- like ``records`` but the answer comes late;
* ``"drop"`` -- never answers.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: Any = None  # asyncio's datagram transport (not a DatagramTransport)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        delay, reply = self.server.answer(query)
        if reply is None:
            return
        transport = self.transport
        wire = reply.to_wire()
        if delay:
            asyncio.get_running_loop().call_later(delay, transport.sendto, wire, addr)
        else:
            transport.sendto(wire, addr)


class DnsServer:
    def __init__(self) -> None:
        self.zones: dict[str, str] = {}
        self.records: dict[str, tuple[list[str], int]] = {}  # name -> (addresses, ttl)
        self.queries: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        self.port: int = self._transport.get_extra_info("sockname")[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._transport, _ = self._loop.run_until_complete(
            self._loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                local_addr=("127.0.0.1", 0)))
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._transport.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- configuration ------------------------------------------------------------------

    def zone(self, name: str, behaviour: str = "records") -> None:
        with self._lock:
            self.zones[name.rstrip(".").lower()] = behaviour

    def record(self, name: str, *addresses: str, ttl: int = 300) -> None:
        with self._lock:
            self.records[name.rstrip(".").lower()] = (list(addresses), ttl)

    def count(self, name: str) -> int:
        with self._lock:
            return self.queries[name.rstrip(".").lower()]

    def total(self) -> int:
        with self._lock:
            return sum(self.queries.values())

    # -- answering ------------------------------------------------------------------------

    def answer(self, query: dns.message.Message) -> tuple[float, dns.message.Message | None]:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        with self._lock:
            self.queries[name] += 1
            zone = next((z for z in self.zones if name == z or name.endswith("." + z)), None)
            behaviour = self.zones.get(zone, "refused") if zone else "refused"
            record = self.records.get(name)
        reply = dns.message.make_response(query)
        delay = 0.0
        if behaviour == "drop":
            return 0.0, None
        if behaviour.startswith("slow:"):
            delay, behaviour = float(behaviour[5:]), "records"
        if behaviour == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif behaviour == "refused":
            reply.set_rcode(dns.rcode.REFUSED)
        elif record is not None and question.rdtype == dns.rdatatype.A:
            addresses, ttl = record
            reply.answer.append(dns.rrset.from_text_list(
                question.name, ttl, dns.rdataclass.IN, dns.rdatatype.A, addresses))
        elif record is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            assert zone is not None
            reply.authority.append(dns.rrset.from_text(
                dns.name.from_text(zone), 60, dns.rdataclass.IN, dns.rdatatype.SOA,
                f"ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60"))
        return delay, reply
