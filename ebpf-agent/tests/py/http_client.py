"""Clients for the eBPF agent's tests: `http_client.py <port> <mode> [args]`.

Prints one JSON line per request: the path, the status (null when the
server answered nothing), and the wall-clock nanoseconds just before the
first byte was sent and just after the last was read, so the test can check
that a span lies within what the client measured.

Modes: urllib PATH... (a fresh connection each), keepalive PATH... (one
connection, http.client), split (a request in three writes with pauses),
pipeline N (N requests in one write, then N responses), disconnect (sends
/slow and closes before the answer), hang (/hang: the server closes without
answering), upload BYTES (POST /upload), traceparent VALUE PATH.
"""

import http.client
import json
import socket
import sys
import time
import urllib.request


def report(path, status, start, end):
    print(json.dumps({"path": path, "status": status, "start_ns": start, "end_ns": end}), flush=True)


def read_response(stream):
    """Reads one response from a buffered socket file; its status, or None at EOF."""
    line = stream.readline()
    if not line:
        return None
    status = int(line.split()[1])
    length, chunked = 0, False
    while True:
        header = stream.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int(stream.readline().split(b";")[0], 16)
            stream.read(size + 2)
            if size == 0:
                break
    else:
        stream.read(length)
    return status


def raw(port, chunks, responses, pause=0.0, close_early=False):
    sock = socket.create_connection(("127.0.0.1", port))
    stream = sock.makefile("rb")
    start = time.time_ns()
    for i, chunk in enumerate(chunks):
        if i and pause:
            time.sleep(pause)
        sock.sendall(chunk)
    if close_early:
        sock.close()
        return start, time.time_ns(), []
    statuses = [read_response(stream) for _ in range(responses)]
    end = time.time_ns()
    sock.close()
    return start, end, statuses


def main():
    port, mode, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    base = f"http://127.0.0.1:{port}"
    if mode == "urllib":
        for path in args:
            start = time.time_ns()
            try:
                with urllib.request.urlopen(base + path) as response:
                    response.read()
                    status = response.status
            except urllib.error.HTTPError as error:
                error.read()
                status = error.code
            report(path, status, start, time.time_ns())
    elif mode == "traceparent":
        value, path = args
        request = urllib.request.Request(base + path, headers={"traceparent": value})
        start = time.time_ns()
        with urllib.request.urlopen(request) as response:
            response.read()
            report(path, response.status, start, time.time_ns())
    elif mode == "keepalive":
        connection = http.client.HTTPConnection("127.0.0.1", port)
        for path in args:
            start = time.time_ns()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            report(path, response.status, start, time.time_ns())
        connection.close()
    elif mode == "split":
        chunks = [b"GET /split HTTP/1.1\r\n", b"Host: split.test\r\n", b"X-Part: 3\r\n\r\n"]
        start, end, statuses = raw(port, chunks, 1, pause=0.15)
        report("/split", statuses[0], start, end)
    elif mode == "pipeline":
        n = int(args[0])
        requests = b"".join(b"GET /pipelined/%d HTTP/1.1\r\nHost: p\r\n\r\n" % i for i in range(n))
        start, end, statuses = raw(port, [requests], n)
        for i, status in enumerate(statuses):
            report(f"/pipelined/{i}", status, start, end)
    elif mode == "disconnect":
        start, end, _ = raw(port, [b"GET /slow HTTP/1.1\r\nHost: d\r\n\r\n"], 0, close_early=True)
        report("/slow", None, start, end)
    elif mode == "hang":
        start, end, statuses = raw(port, [b"GET /hang HTTP/1.1\r\nHost: h\r\n\r\n"], 1)
        report("/hang", statuses[0], start, end)
    elif mode == "upload":
        size = int(args[0])
        connection = http.client.HTTPConnection("127.0.0.1", port)
        start = time.time_ns()
        connection.request("POST", "/upload", body=b"u" * size)
        response = connection.getresponse()
        body = response.read()
        assert int(body) == size, body
        report("/upload", response.status, start, time.time_ns())
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
