#!/usr/bin/env python3
"""A broker IPC v1 client with the framing of SPEC section 6, stdlib only.

It does what the TrustPlane Python SDK's BrokerClient does on the wire: one
AF_UNIX stream connection, one compact JSON line (``separators=(",", ":")``)
terminated by LF, then one JSON object read back (until LF or EOF). The tests
use it to show that a Python caller can talk to the TypeScript broker as is.

Usage: broker_ipc_client.py SOCKET_PATH < envelope.json  (prints the response)
"""
import json
import socket
import sys

MAX_BYTES = 1024 * 1024


def exchange(socket_path, envelope, timeout=5.0):
    line = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        s.sendall(line)
        buf = b""
        while b"\n" not in buf and len(buf) <= MAX_BYTES:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf.split(b"\n", 1)[0].decode("utf-8"))


def main():
    envelope = json.loads(sys.stdin.read())
    response = exchange(sys.argv[1], envelope)
    sys.stdout.write(json.dumps(response, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
