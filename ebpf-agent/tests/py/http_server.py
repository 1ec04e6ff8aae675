"""HTTP/1.1 server for the eBPF agent's tests: Python's http.server with
keep-alive, on 127.0.0.1:<port> (argv[1]). Prints "ready" once listening.

Routes: /status/<code> answers <code>; /chunked answers in three chunks;
/file answers this file's bytes with sendfile(2);
/slow waits 300 ms first; /hang closes the connection without answering;
/proxy/<port>/<path> asks 127.0.0.1:<port> for /<path> (an outgoing
request, for client spans) and answers with its status;
POST /upload reads the body and answers its length; anything else is 200.
"""

import os
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, body=b"ok\n"):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/status/"):
            self.answer(int(path.rsplit("/", 1)[1]))
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first ", b"second ", b"third\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.02)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/file":
            # The body goes out with sendfile(2), as static file servers send it.
            with open(__file__, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.connection.sendfile(f)
        elif path == "/slow":
            time.sleep(0.3)
            self.answer(200)
        elif path == "/hang":
            self.close_connection = True
        elif path.startswith("/proxy/"):
            port, rest = path[len("/proxy/"):].split("/", 1)
            url = "http://127.0.0.1:%s/%s" % (port, rest)
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
                    code = response.status
            except urllib.error.HTTPError as error:
                code = error.code
            self.answer(code)
        else:
            self.answer(200)

    def do_HEAD(self):
        self.answer(200)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        remaining = length
        while remaining > 0:
            got = self.rfile.read(min(remaining, 65536))
            if not got:
                break
            remaining -= len(got)
        self.answer(200, b"%d\n" % (length - remaining))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
