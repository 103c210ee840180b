#!/usr/bin/env python3
"""Load test of `mamba2 serve` beside llama.cpp's `llama-server`, same weights, same host, one run.

  /opt/peers/bin/python benchmarks/serve_load.py --ours .build/release/mamba2 \\
      --llama-server PATH/llama-server --shape 130m --streams 16,64 --seconds 60 --threads 2

For each server and each stream count N: start the server (loopback only) with N slots, wait until it
answers, then run N clients, each sending streaming /v1/completions requests one after another (a prompt of
random token ids, greedy, `ignore_eos` so that every request runs to max_tokens) for --warmup seconds
unmeasured and --seconds measured. Reported per point: requests and errors (any non-200, a broken stream or
a missing usage count is an error), aggregate generated tokens/s inside the measured window (each request's
tokens spread evenly between its first and last event), time to first token p50/p99 of the requests sent in
the window, and the server's resident memory (VmRSS, sampled every 0.5 s) at the start and the end of the
window and its peak. Bounded: every request has max_tokens and a timeout; the run ends after
warmup + seconds per point.

The weights: a random checkpoint of the shape in the Hugging Face layout, float32 (benchmarks/peer_compare.py
writes it), converted to GGUF f32 by the converter in the llama-cpp-python sdist for llama-server. Runs with
Python, aiohttp and numpy only besides the binaries, so it also runs on the GPU machine (--device cuda, our
server only: pass no --llama-server).
"""
import argparse, asyncio, json, os, random, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import aiohttp  # noqa: E402
from server_process import free_port  # noqa: E402


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class Server:
    def __init__(self, name, argv, port, log):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log)

    async def wait_ready(self, session, limit=600):
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before answering")
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/health", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer /health within {limit} s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def one_request(session, url, prompt, max_tokens):
    """One streamed completion: (t_sent, t_first, t_last, tokens) or raises."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    t_sent = time.monotonic()
    t_first = t_last = None
    tokens = None
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=600)) as r:
        if r.status != 200:
            raise RuntimeError(f"status {r.status}: {(await r.text())[:200]}")
        done = False
        async for raw in r.content:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            now = time.monotonic()
            # Every event that carries a choice marks progress (llama-server sends one per token, with empty
            # text while a character is incomplete; ours one per piece of text).
            if event.get("choices"):
                t_first = t_first or now
                t_last = now
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
        if not done or tokens is None or t_first is None:
            raise RuntimeError("stream ended without [DONE], usage or any choice")
    return t_sent, t_first, t_last, tokens


async def drive(port, streams, window, prompt_tokens, max_tokens, vocab, seed):
    """`streams` clients sending requests one after another until the window ends: (records, errors)."""
    url = f"http://127.0.0.1:{port}/v1/completions"
    rng = random.Random(seed)
    records, errors = [], []
    # A fresh connection per request: llama-server closes kept-alive connections between responses, which
    # made reused ones fail to send; both servers get the same treatment.
    connector = aiohttp.TCPConnector(limit=streams + 4, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client():
            while time.monotonic() < window[1]:
                prompt = [rng.randrange(1000, vocab) for _ in range(prompt_tokens)]
                try:
                    records.append(await one_request(session, url, prompt, max_tokens))
                except Exception as e:  # noqa: BLE001 - every failure counts as an error
                    errors.append(f"{type(e).__name__}: {e}")
                    await asyncio.sleep(0.1)
        await asyncio.gather(*[client() for _ in range(streams)])
    return records, errors


def drive_in_process(args):
    return asyncio.run(drive(*args))


async def load(server, streams, warmup, seconds, prompt_tokens, max_tokens, vocab, seed, processes):
    """Drives the server (in `processes` client processes, so that parsing the events of many fast streams
    does not make Python the bottleneck), samples its memory, and sums up the measured window."""
    t0 = time.monotonic()
    window = (t0 + warmup, t0 + warmup + seconds)
    rss = []

    async def sampler():
        while time.monotonic() < window[1] + 1:
            rss.append((time.monotonic(), rss_bytes(server.proc.pid)))
            await asyncio.sleep(0.5)

    shares = [streams // processes + (1 if i < streams % processes else 0) for i in range(processes)]
    jobs = [(server.port, n, window, prompt_tokens, max_tokens, vocab, seed * 1000 + i) for i, n in enumerate(shares) if n > 0]
    if len(jobs) == 1:
        (records, errors), _ = await asyncio.gather(drive(*jobs[0]), sampler())
    else:
        import multiprocessing
        loop = asyncio.get_running_loop()
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            parts, _ = await asyncio.gather(loop.run_in_executor(None, pool.map, drive_in_process, jobs), sampler())
        records = [r for rs, _ in parts for r in rs]
        errors = [e for _, es in parts for e in es]
    scraped = {}
    if server.name == "mamba2 serve":
        # Our server's own view: the mean decode step and batch over the whole run.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                for line in (await r.text()).splitlines():
                    if not line.startswith("#") and " " in line:
                        k, v = line.rsplit(" ", 1)
                        scraped[k] = float(v)
    # Tokens inside the window: each request's tokens spread evenly over [t_first, t_last].
    inside = 0.0
    for t_sent, t_first, t_last, n in records:
        span = max(t_last - t_first, 1e-9)
        overlap = max(0.0, min(t_last, window[1]) - max(t_first, window[0]))
        inside += n * (overlap / span if t_last > t_first else float(window[0] <= t_first <= window[1]))
    ttft = sorted(t_first - t_sent for t_sent, t_first, _, _ in records if window[0] <= t_sent <= window[1])
    in_window = [b for t, b in rss if window[0] <= t <= window[1]]

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
    return {"server": server.name, "streams": streams, "requests": len(records), "errors": len(errors),
            "error_examples": errors[:3], "tokens_per_s": inside / seconds,
            "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
            "rss_start_mib": in_window[0] / 2**20 if in_window else None, "rss_end_mib": in_window[-1] / 2**20 if in_window else None,
            "rss_peak_mib": max(in_window) / 2**20 if in_window else None,
            # Each token observes the step that made it: this is the step time weighted by its rows.
            "server_mean_decode_step_ms": 1000 * scraped["mamba2_time_per_output_token_seconds_sum"]
            / max(scraped["mamba2_time_per_output_token_seconds_count"], 1) if scraped else None,
            "server_mean_batch": scraped["mamba2_decode_batch_size_sum"] / max(scraped["mamba2_decode_batch_size_count"], 1) if scraped else None,
            "server_prefills": scraped.get("mamba2_prefills_total"),
            "server_mean_prefill_ms": 1000 * scraped["mamba2_prefill_seconds_sum"] / max(scraped["mamba2_prefill_seconds_count"], 1)
            if scraped else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", required=True, help="the mamba2 binary")
    ap.add_argument("--llama-server", help="llama.cpp's llama-server binary (omit to run ours alone)")
    ap.add_argument("--shape", default="130m")
    ap.add_argument("--model", help="our model directory (default: a random checkpoint of --shape)")
    ap.add_argument("--gguf", help="the same weights as GGUF f32 (default: converted here)")
    ap.add_argument("--streams", default="16,64")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-args", default="", help="more arguments for mamba2 serve, as one string (e.g. '--cache-mib 0')")
    ap.add_argument("--client-processes", type=int, default=1, help="client processes (use several where streams are fast: the GPU)")
    ap.add_argument("--device", default="cpu", help="ours: cpu or cuda")
    ap.add_argument("--weights-dtype", help="ours: f32, bf16 or f16 weights (default: the device's, f32 on the CPU)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mamba2-serve-load"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--logs", help="folder for the servers' logs (default: the work folder)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    logs = a.logs or a.work
    os.makedirs(logs, exist_ok=True)
    model = a.model
    if model is None:
        from peer_compare import write_checkpoint
        model = os.path.join(a.work, f"mamba2-{a.shape}-random")
        if not os.path.exists(os.path.join(model, "model.safetensors")):
            write_checkpoint(a.shape, model)
    gguf = a.gguf
    if a.llama_server and gguf is None:
        from peer_compare import convert
        gguf = convert(model, "f32", a.work)
    with open(os.path.join(model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    host = subprocess.run(["uname", "-n"], capture_output=True, text=True).stdout.strip()
    results = []
    for n in [int(x) for x in a.streams.split(",")]:
        plans = [("mamba2 serve", [a.ours, "serve", "--model", model, "--slots", str(n), "--threads", str(a.threads),
                                   "--device", a.device, "--max-tokens-limit", str(a.max_tokens), "--queue", str(4 * n)]
                  + (["--weights-dtype", a.weights_dtype] if a.weights_dtype else []) + a.ours_args.split())]
        if a.llama_server:
            ctx = n * (a.prompt_tokens + a.max_tokens + 64)
            plans.append(("llama-server", [a.llama_server, "-m", gguf, "-t", str(a.threads), "-tb", str(a.threads), "--parallel", str(n),
                                           "-c", str(ctx), "--cont-batching", "-ngl", "0", "--no-webui"]))
        for name, argv in plans:
            port = free_port()
            argv = argv + (["--port", str(port), "--host", "127.0.0.1"])
            with open(os.path.join(logs, f"{name.split()[0]}-{n}.log"), "w") as log:
                server = Server(name, argv, port, log)
                try:
                    async def run():
                        async with aiohttp.ClientSession() as s:
                            await server.wait_ready(s)
                        return await load(server, n, a.warmup, a.seconds, a.prompt_tokens, a.max_tokens, vocab, seed=n,
                                          processes=a.client_processes)
                    r = asyncio.run(run())
                finally:
                    server.stop()
            r["exit_code"] = server.proc.returncode
            results.append(r)
            print(json.dumps(r), flush=True)
    # The table: each of ours against llama-server at the same stream count.
    print(f"\nhost {host}, shape {a.shape}, ours with '{a.ours_args}'" if a.ours_args else f"\nhost {host}, shape {a.shape}", end="")
    print(f", {a.threads} threads, device {a.device}, weights {a.weights_dtype or 'default'}, "
          f"prompt {a.prompt_tokens} tokens, max_tokens {a.max_tokens}, {a.seconds:.0f} s measured after {a.warmup:.0f} s")
    print("| server | streams | requests | errors | tokens/s | vs llama-server | TTFT p50 | TTFT p99 | RSS start / end / peak MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        peer = next((x for x in results if x["server"] == "llama-server" and x["streams"] == r["streams"]), None)
        ratio = f"{r['tokens_per_s'] / peer['tokens_per_s']:.2f}x" if peer and peer["tokens_per_s"] > 0 else ""
        mem = (f"{r['rss_start_mib']:.0f} / {r['rss_end_mib']:.0f} / {r['rss_peak_mib']:.0f}" if r["rss_start_mib"] is not None else "")
        print(f"| {r['server']} | {r['streams']} | {r['requests']} | {r['errors']} | {r['tokens_per_s']:.1f} | {ratio} | "
              f"{r['ttft_p50_s'] * 1000:.0f} ms | {r['ttft_p99_s'] * 1000:.0f} ms | {mem} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"host": host, "shape": a.shape, "threads": a.threads, "device": a.device, "weights": a.weights_dtype,
                       "prompt_tokens": a.prompt_tokens, "max_tokens": a.max_tokens, "seconds": a.seconds, "warmup": a.warmup, "ours_args": a.ours_args,
                       "results": results}, f, indent=1)
    if any(r["errors"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
