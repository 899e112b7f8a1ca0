"""moto's S3 in server mode on 127.0.0.1, driven over stdin by tests/support/s3.rs.

Why not plain `moto_server`: moto keeps every bucket in this process's memory, so a killed
and restarted `moto_server` comes back empty. This script instead closes and reopens the
listening socket inside one process, so "S3 is down" (connections refused) can be
simulated without losing a byte. It also binds port 0 itself, so there is no race for a
free port, and it exits when its stdin closes, so it cannot outlive the test that owns it.

Protocol: one reply line on stdout per event, everything else (moto's and werkzeug's
request log) on stderr.
- at start:        `listening PORT MOTO_VERSION`
- stdin `stop`:    the socket is closed; reply `stopped`
- stdin `start`:   listen again on the same port; reply `listening PORT MOTO_VERSION`
- anything else, or a failure: reply `error: WHAT`
- stdin EOF:       exit 0
"""

import importlib.metadata
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

HOST = "127.0.0.1"
MOTO_VERSION = importlib.metadata.version("moto")

# One application for the life of the process. moto's state lives in its backends, not
# in the socket, so it survives a stop and start.
APP = DomainDispatcherApplication(create_backend_app)


def listen(port):
    """Binds HOST:port (0 picks a free port) and serves on a daemon thread."""
    server = make_server(HOST, port, APP, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def reply(line):
    print(line, flush=True)


def main():
    server = listen(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    port = server.server_port
    reply(f"listening {port} {MOTO_VERSION}")
    for line in sys.stdin:
        command = line.strip()
        if command == "stop" and server is not None:
            server.shutdown()
            server.server_close()
            server = None
            reply("stopped")
        elif command == "start" and server is None:
            try:
                server = listen(port)
            except OSError as e:
                # Someone took the port while it was closed. Stay up, data intact, so
                # the caller can say so (and try again).
                reply(f"error: listening on {HOST}:{port}: {e}")
                continue
            reply(f"listening {port} {MOTO_VERSION}")
        else:
            reply(f"error: unexpected command {command!r}")


if __name__ == "__main__":
    main()
