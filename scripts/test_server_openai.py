#!/usr/bin/env python3
"""`mamba2 serve` driven by the official `openai` Python client over loopback: a greedy completion equals
`mamba2 generate` for the same prompt; streaming gives the same text; stop strings, logprobs, several
prompts; errors arrive as the client's exceptions with the right status (400, 404, 401 with --api-key).
Usage: scripts/test_server_openai.py BINARY   (exit 1 on the first failed check)"""
import os
import signal
import subprocess
import sys
import time

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_process import start  # noqa: E402


def check(cond, what):
    if not cond:
        print(f"FAIL {what}")
        sys.exit(1)
    print(f"ok   {what}")


def main():
    binary = sys.argv[1]
    prompt = "And it came to pass"
    expected = subprocess.run([binary, "generate", "--prompt", prompt, "--max-tokens", "40", "--temperature", "0", "--threads", "2"],
                              capture_output=True, text=True, check=True).stdout[:-1]  # generate ends with a newline
    proc, port = start(binary)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model="english-bytes", prompt=prompt, max_tokens=40, temperature=0)
        check(r.choices[0].text == expected, f"greedy completion equals mamba2 generate ({expected[:30]!r}…)")
        check(r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage counts")
        streamed = "".join(c.choices[0].text for c in client.completions.create(model="x", prompt=prompt, max_tokens=40, temperature=0, stream=True))
        check(streamed == expected, "streamed text equals the completion")
        words = expected.split()
        stop = next(w for w in words[2:] if len(w) >= 3)
        r = client.completions.create(model="x", prompt=prompt, max_tokens=40, temperature=0, stop=[stop])
        check(expected.startswith(r.choices[0].text) and stop not in r.choices[0].text and r.choices[0].finish_reason == "stop", f"stop string {stop!r}")
        r = client.completions.create(model="x", prompt=prompt, max_tokens=8, temperature=0, logprobs=2)
        lp = r.choices[0].logprobs
        check(len(lp.tokens) == 8 and len(lp.token_logprobs) == 8 and all(v <= 0 for v in lp.token_logprobs), "logprobs")
        r = client.completions.create(model="x", prompt=["In the beginning", "Debian is"], max_tokens=5, temperature=0.7, seed=3)
        check([c.index for c in r.choices] == [0, 1], "two prompts, two choices")
        check(client.models.list().data[0].id != "", "models")
        for what, kwargs in (("max_tokens over the limit", dict(max_tokens=10**6)), ("top_p 0", dict(top_p=0))):
            try:
                client.completions.create(model="x", prompt=prompt, **kwargs)
                check(False, f"{what}: 400")
            except openai.BadRequestError as e:
                check(e.status_code == 400 and e.body and e.body.get("message"), f"{what}: 400 ({e.body.get('message')})")
        try:
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])
            check(False, "chat: 400")
        except openai.BadRequestError as e:
            check("chat template" in e.body.get("message", ""), "chat: 400, no chat template")
    finally:
        proc.terminate()
        check(proc.wait(timeout=30) == 0, "SIGTERM: the server exits cleanly")
    proc, port = start(binary, "--api-key", "k3y")
    try:
        try:
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
            check(False, "wrong key: 401")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, "wrong key: 401")
        check(len(openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k3y", max_retries=0).models.list().data) == 1, "right key")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    graceful_shutdown(binary)


def graceful_shutdown(binary):
    """SIGTERM during a long stream: the stream still ends properly (finish_reason, [DONE]) within the bound,
    new requests are refused, and the process exits 0."""
    timeout = 1.0
    proc, port = start(binary, "--shutdown-timeout", str(timeout))
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
        stream = client.completions.create(model="x", prompt="And it came to pass", max_tokens=4000, temperature=0, stream=True,
                                           extra_body={"ignore_eos": True})
        chunks = iter(stream)
        next(chunks)  # it runs
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices]
        ended = time.monotonic() - t0
        # The bound plus the time to end the step in flight and write the last events (a second is ample).
        check(finish and finish[-1] == "length" and ended < timeout + 1.0, f"SIGTERM: the running stream ends within the bound ({ended:.2f} s)")
        try:
            client.completions.create(model="x", prompt="x", max_tokens=1)
            refused = False
        except (openai.APIStatusError, openai.APIConnectionError) as e:
            refused = not isinstance(e, openai.APIStatusError) or e.status_code == 503
        check(refused, "SIGTERM: new requests are refused (503 or no connection)")
        check(proc.wait(timeout=10) == 0, f"SIGTERM: the server exits 0 within {time.monotonic() - t0:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()


if __name__ == "__main__":
    main()
