#!/usr/bin/env python3
"""Issue 23's compression figures, side by side in one run against one
server (a release ratesd with full windows, e.g. the simulated source's
1,800-second backfill):

- bytes on the wire for a v1 subscribe (the `asset_history` answer, frame
  headers included) with and without permessage-deflate;
- the server's CPU per subscribe (connect, upgrade, subscribe, the whole
  history read, close), over N subscribers each way, alternated in rounds.

The client speaks WebSocket by hand over a socket (the standard library
only), so that it counts the bytes as they cross the wire and decompresses
what the server compressed (RFC 7692, the server's messages standing alone).

Usage: loadtest/deflate.py --url ws://127.0.0.1:8080/api/v1/ws --pid PID
       [--subscribers 2000] [--concurrency 50] [--rounds 2] [--asset 1]
"""
import argparse
import asyncio
import base64
import json
import os
import struct
import time
import urllib.parse
import zlib

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def frame(opcode, payload):
    """A masked client frame (the mask is zero: the bytes go as they are)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.buf = b""
        self.wire = 0

    async def need(self, n):
        while len(self.buf) < n:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.wire += len(chunk)
            self.buf += chunk

    async def take(self, n):
        await self.need(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def message(self):
        """The next whole message: (text, compressed, bytes it took on the wire)."""
        parts, compressed, used = [], False, 0
        while True:
            b0, b1 = await self.take(2)
            n, used = b1 & 0x7F, used + 2
            if n == 126:
                (n,) = struct.unpack("!H", await self.take(2))
                used += 2
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.take(8))
                used += 8
            payload = await self.take(n)
            used += n
            opcode = b0 & 0x0F
            if opcode >= 0x8:  # control frames between fragments
                if opcode == 0x8:
                    raise ConnectionError(f"closed: {payload[:2].hex()} {payload[2:]!r}")
                continue
            if opcode != 0:
                compressed = bool(b0 & 0x40)
            parts.append(payload)
            if b0 & 0x80:
                break
        data = b"".join(parts)
        if compressed:
            data = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
        return data.decode(), compressed, used


async def subscribe(url, deflate, asset):
    """One subscriber: returns (history points, bytes of the history on the wire, compressed)."""
    u = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port or 80)
    conn = Conn(reader, writer)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    writer.write(
        (
            f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{ext}\r\n"
        ).encode()
    )
    while b"\r\n\r\n" not in conn.buf:
        await conn.need(len(conn.buf) + 1)
    head, conn.buf = conn.buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    agreed = b"permessage-deflate" in head.lower()
    if agreed != deflate:
        raise ConnectionError(f"deflate offered={deflate} but agreed={agreed}")
    msg = json.dumps({"action": "subscribe", "message": {"assetId": asset}}).encode()
    writer.write(frame(0x1, msg))
    while True:
        text, compressed, used = await conn.message()
        if text.startswith('{"action":"asset_history"'):
            points = len(json.loads(text)["message"]["points"])
            break
    writer.write(frame(0x8, struct.pack("!H", 1000)))
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass
    return points, used, compressed


async def batch(args, deflate):
    sem = asyncio.Semaphore(args.concurrency)
    results = []

    async def one():
        async with sem:
            results.append(await subscribe(args.url, deflate, args.asset))

    before, t0 = cpu_seconds(args.pid), time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.subscribers)))
    cpu, wall = cpu_seconds(args.pid) - before, time.monotonic() - t0
    points = {p for p, _, _ in results}
    wire = sorted(u for _, u, _ in results)
    return {
        "cpu_ms": cpu * 1000 / len(results),
        "wall": wall,
        "points": points,
        "wire": wire[len(wire) // 2],
        "compressed": sum(c for _, _, c in results),
        "n": len(results),
    }


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="ws://127.0.0.1:8080/api/v1/ws")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--subscribers", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--asset", type=int, default=1)
    args = p.parse_args()
    await subscribe(args.url, True, args.asset)  # warm up
    print("round  deflate  subscribers  history points  bytes on the wire (median)  server CPU ms a subscribe  wall s")
    totals = {False: [], True: []}
    for r in range(1, args.rounds + 1):
        for deflate in (False, True):
            b = await batch(args, deflate)
            totals[deflate].append(b)
            print(
                f"{r:>5}  {'yes' if deflate else 'no':>7}  {b['n']:>11}  "
                f"{'/'.join(map(str, sorted(b['points']))):>14}  {b['wire']:>26}  "
                f"{b['cpu_ms']:>25.3f}  {b['wall']:>6.1f}"
            )
    plain_wire = sum(b["wire"] for b in totals[False]) / args.rounds
    deflate_wire = sum(b["wire"] for b in totals[True]) / args.rounds
    plain_cpu = sum(b["cpu_ms"] for b in totals[False]) / args.rounds
    deflate_cpu = sum(b["cpu_ms"] for b in totals[True]) / args.rounds
    print(
        f"SUMMARY wire plain={plain_wire:.0f} B deflate={deflate_wire:.0f} B "
        f"({plain_wire / deflate_wire:.1f}x smaller); server CPU a subscribe "
        f"plain={plain_cpu:.3f} ms deflate={deflate_cpu:.3f} ms ({deflate_cpu / plain_cpu:.2f}x)"
    )


asyncio.run(main())
