#!/usr/bin/env python3
"""Fetches the GPU peers' files into a folder (default out/peers) for benchmarks/gpu_*_compare.py:
einops and packaging as wheels (pip download), and mamba-ssm's source distribution, whose build needs a
GPU stack, so pip cannot download it (it would run its setup); its file is found on the package index
that pip itself is configured with (pip's own default index URL, or PIP_INDEX_URL), not a written-down host."""
import argparse, os, re, subprocess, sys, urllib.parse, urllib.request


def index_url():
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env.rstrip("/") + "/"
    from pip._internal.models.index import PyPI
    return PyPI.simple_url.rstrip("/") + "/"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/peers")
    ap.add_argument("--mamba-ssm", default="2.3.2.post1", help="mamba-ssm version (2.3.2.post1: the sdist measured before)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", a.out, "einops", "packaging"])
    page_url = index_url() + "mamba-ssm/"
    page = urllib.request.urlopen(page_url).read().decode()
    name = f"mamba_ssm-{a.mamba_ssm}.tar.gz"
    links = [urllib.parse.urljoin(page_url, h) for h in re.findall(r'href="([^"]+)"', page)]
    link = next((l for l in links if urllib.parse.urlparse(l).path.endswith("/" + name)), None)
    if link is None:
        sys.exit(f"{name} is not on {page_url}")
    dest = os.path.join(a.out, name)
    with urllib.request.urlopen(link.split("#")[0]) as r, open(dest, "wb") as f:
        f.write(r.read())
    print(dest)


if __name__ == "__main__":
    main()
