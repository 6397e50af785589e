"""The /proc/net/tcp{,6} parser on sample lines, and the reader on a real loopback connection."""

from __future__ import annotations

import os
import socket
import sys
from ipaddress import ip_address

import pytest

from vaultd.system import tcp_owner
from vaultd.system.tcp_owner import TcpEntry, owner_of, parse_table

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 12 1
   2: garbage
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue \
rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000001000000:D431 01 \
00000000:00000000 00:00000000 00000000 65534 0 13 1
   1: 0000000000000000FFFF00000100007F:C351 0000000000000000FFFF00000100007F:1F90 01 \
00000000:00000000 00:00000000 00000000  1001 0 14 1
"""


def test_ipv4_rows_little_endian() -> None:
    listen, client = parse_table(TCP, byteorder="little")
    assert listen == TcpEntry((ip_address("127.0.0.1"), 8080), (ip_address(0), 0), 0)
    assert client.local == (ip_address("127.0.0.1"), 50000) and client.uid == 1000


def test_ipv4_rows_big_endian() -> None:
    (listen, _client) = parse_table(TCP.replace("0100007F", "7F000001"), byteorder="big")
    assert listen.local == (ip_address("127.0.0.1"), 8080)


def test_ipv6_rows_and_ipv4_mapped_addresses() -> None:
    loop6, mapped = parse_table(TCP6, byteorder="little")
    assert loop6.local == (ip_address("::1"), 80) and loop6.remote == (ip_address("::1"), 54321)
    assert loop6.uid == 65534
    assert mapped.local == (ip_address("127.0.0.1"), 50001)  # ::ffff:127.0.0.1 as IPv4
    assert mapped.remote == (ip_address("127.0.0.1"), 8080) and mapped.uid == 1001


def test_owner_is_the_row_bound_to_the_peer_and_connected_to_us() -> None:
    entries = parse_table(TCP, byteorder="little") + parse_table(TCP6, byteorder="little")
    server = (ip_address("127.0.0.1"), 8080)
    assert owner_of(entries, (ip_address("127.0.0.1"), 50000), server) == 1000
    assert owner_of(entries, (ip_address("127.0.0.1"), 50001), server) == 1001
    assert owner_of(entries, server, (ip_address("127.0.0.1"), 50000)) is None  # our own end
    assert owner_of(entries, (ip_address("127.0.0.1"), 1), server) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/net/tcp is Linux's")
def test_reader_finds_this_process_on_a_real_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        with client, conn:
            assert tcp_owner.peer_uid(conn) == os.geteuid()
            assert tcp_owner.is_own_user(conn) == (True, os.geteuid())
