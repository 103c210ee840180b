"""Starting `mamba2 serve` on a free loopback port for the client tests (test_server_openai.py,
test_server_schema.py); standard library only, so that each test's own client package is all it needs."""
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(binary, *extra):
    """The server process and its port, once it accepts connections (the model loads first)."""
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--port", str(port), "--threads", "2", *extra], stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"mamba2 serve exited: {proc.stderr.read()}")
            time.sleep(0.1)
    proc.kill()
    sys.exit("mamba2 serve did not listen within 60 s")
