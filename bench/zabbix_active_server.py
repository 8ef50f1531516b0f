#!/usr/bin/python3
"""The smallest Zabbix server that zabbix_agentd's active checks need, for bench_agent.

zabbix_agentd follows a log only as an active check: it asks the server named by ServerActive for its
list of checks, then sends the values it found. Running a real zabbix-server needs a database and a
frontend; this script answers the two requests the agent makes and nothing else:

  {"request": "active checks", "host": ...}  -> the one log[] item given with --key
  {"request": "agent data", "data": [...]}   -> "success", counting the values received (and the
                                                distinct log lines: a resent one counts once there;
                                                position-only entries without a value are not lines)

Zabbix framing: "ZBXD", a flags byte (0x01 protocol, 0x02 zlib-compressed, 0x04 large), then the data
length and the reserved (uncompressed) length, 4 bytes each little-endian (8 with the large flag).

Loopback only; every read has a timeout. Writes the bound port to --port-file and, after every
request, running totals as JSON to --stats-file (written to a temporary name, then renamed).
"""
import argparse
import json
import os
import socket
import socketserver
import struct
import threading
import zlib

HEADER = b"ZBXD"
MAX_PACKET = 64 * 1024 * 1024


def recv_exact(sock, count):
    chunks = []
    while count > 0:
        chunk = sock.recv(min(count, 65536))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_packet(sock):
    head = recv_exact(sock, 5)
    if head[:4] != HEADER:
        raise ValueError("not a Zabbix packet")
    flags = head[4]
    size_bytes = 8 if flags & 0x04 else 4
    fmt = "<QQ" if flags & 0x04 else "<II"
    length, reserved = struct.unpack(fmt, recv_exact(sock, 2 * size_bytes))
    if length > MAX_PACKET or reserved > MAX_PACKET:
        raise ValueError("packet too large")
    body = recv_exact(sock, length)
    if flags & 0x02:
        body = zlib.decompress(body)
    return json.loads(body.decode("utf-8", errors="replace"))


def write_packet(sock, obj):
    body = json.dumps(obj).encode()
    sock.sendall(HEADER + b"\x01" + struct.pack("<II", len(body), 0) + body)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, key, stats_file):
        super().__init__(address, Handler)
        self.key = key
        self.stats_file = stats_file
        self.lock = threading.Lock()
        self.stats = {"active_checks_requests": 0, "agent_data_requests": 0, "values": 0,
                      "distinct_values": 0, "resent_lines": 0, "last_lastlogsize": 0, "errors": 0}
        # A value resent after an answer the agent did not take comes again with its (session, id).
        self.seen = set()

    def count(self, data=(), **changes):
        with self.lock:
            for d in data:
                # Entries without a value only carry the log position reached (zabbix's "meta" values).
                if "value" not in d:
                    continue
                key = (d.get("session"), d.get("id"), d.get("lastlogsize"), d.get("value"))
                if key not in self.seen:
                    self.seen.add(key)
                    self.stats["distinct_values"] += 1
                    if len(self.seen) <= 1000:  # kept for a look with bench_agent --keep
                        with open(self.stats_file + ".values", "a") as f:
                            f.write(json.dumps(d) + "\n")
                else:
                    self.stats["resent_lines"] += 1
            for name, value in changes.items():
                if name == "last_lastlogsize":
                    self.stats[name] = max(self.stats[name], value)
                else:
                    self.stats[name] += value
            tmp = self.stats_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.stats, f)
            os.replace(tmp, self.stats_file)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(10)
        try:
            request = read_packet(self.request)
        except (OSError, ValueError, ConnectionError):
            self.server.count(errors=1)
            return
        kind = request.get("request")
        if kind == "active checks":
            write_packet(self.request, {"response": "success", "data": [
                {"key": self.server.key, "key_orig": self.server.key, "delay": 1, "lastlogsize": 0,
                 "mtime": 0}]})
            self.server.count(active_checks_requests=1)
        elif kind == "agent data":
            data = request.get("data", [])
            size = max([int(d.get("lastlogsize", 0)) for d in data] or [0])
            write_packet(self.request, {"response": "success",
                                        "info": "processed: %d; failed: 0; total: %d; seconds spent: 0.0001"
                                        % (len(data), len(data))})
            self.server.count(data, agent_data_requests=1, values=len(data), last_lastlogsize=size)
        else:
            write_packet(self.request, {"response": "failed", "info": "unsupported request"})
            self.server.count(errors=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--stats-file", required=True)
    parser.add_argument("--key", required=True, help="the log[] item key to hand out")
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), args.key, args.stats_file)
    server.count()  # an all-zero stats file exists before the port is announced
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
