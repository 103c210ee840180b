#!/usr/bin/env python3
"""schemathesis (PyPI) against `mamba2 serve`'s own OpenAPI document (GET /openapi.json): a bounded number
of generated requests per route, valid and invalid; every response must be a documented status with a body
that matches the document, and none a 5xx. The inputs are drawn fresh each run (schemathesis prints the
seed to reproduce a failure).
Usage: scripts/test_server_schema.py BINARY [MAX_EXAMPLES]   (exit 1 on any failure)"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_process import start  # noqa: E402


def main():
    binary = sys.argv[1]
    examples = sys.argv[2] if len(sys.argv) > 2 else "25"
    # Small limits keep each generated request short (a debug build decodes slowly); 64 slots so that a
    # request of 64 prompts is not queued behind itself.
    proc, port = start(binary, "--max-tokens-limit", "8", "--slots", "64", "--queue", "1024")
    try:
        r = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", f"http://127.0.0.1:{port}/openapi.json",
                            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                            "--max-examples", examples, "--request-timeout", "120", "--no-color"],
                           cwd=tempfile.mkdtemp(prefix="mamba2-schemathesis-"),  # it keeps a .schemathesis folder where it runs
                           env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                               os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)))
        print("ok   schemathesis" if r.returncode == 0 else "FAIL schemathesis")
        sys.exit(r.returncode)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
