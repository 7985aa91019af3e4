"""Throughput of ``lzn serve`` (issue 23): requests/s and latency p50 / p95 of ``POST /classify`` with one
image and ``POST /generate`` with eight images (``{"labels": [...], "seed": i}``), each with 1 and 8
concurrent clients, on the digits demo model.

The script starts the server itself (``python -m lzn serve MODEL --port FREE_PORT``, the environment passed
on, so ``OMP_NUM_THREADS`` reaches it), waits for ``GET /health``, runs the cases one after another and
stops the server by its process id (SIGINT, as Ctrl-C). A case sends ``--warmup`` untimed requests, then
each client (a thread with its own keep-alive connection) sends requests until ``--requests`` have been
sent in all or ``--seconds`` have passed. A request's latency is the time from sending it to having read
its whole answer; requests/s counts the answered requests over the case's wall time. The server answers
one request at a time (one lock around the model), so more clients raise the latency, not the rate. The
clients use the standard library only and run on the same machine as the server, so they take a little of
its CPU. Every answer is checked (status 200, the number of predictions or images); any error fails the
run after the report. Prints JSON, then a one-line summary.

    python benchmarks/serve.py                          # runs/demo/model (`make demo` first), about a minute
    python benchmarks/serve.py --model PATH --requests 200 --seconds 60 --json serve.json
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "runs/demo/model"


def png(size: int, channels: int) -> bytes:
    """A ``size`` x ``size`` 8-bit PNG (grey, or RGB for 3 channels) of a white vertical stroke on black."""
    lo, hi = size // 2 - max(size // 8, 1), size // 2 + max(size // 8, 1)
    row = b"".join((b"\xff" if lo <= x < hi else b"\x00") * (3 if channels == 3 else 1) for x in range(size))
    raw = b"".join(b"\x00" + (row if size // 8 <= y < size - size // 8 else bytes(len(row))) for y in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2 if channels == 3 else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m lzn serve MODEL --port PORT`` in a process of its own, its output in a temporary file."""

    def __init__(self, model: str, port: int, timeout: float) -> None:
        self.port, self.log = port, tempfile.TemporaryFile("w+")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "lzn", "serve", model, "--port", str(port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = start + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lzn serve exited with code {self.proc.returncode}:\n{self.output()}")
            try:
                if get(port, "/health").get("status") == "ok":
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"lzn serve did not answer /health within {timeout:g} s:\n{self.output()}")
            time.sleep(0.2)
        self.startup_seconds = time.perf_counter() - start

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        """SIGINT to the server's process id (Ctrl-C), then SIGKILL if it has not stopped in 30 s."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def get(port: int, path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        if resp.status != 200:
            raise ValueError(f"GET {path}: {resp.status} {body}")
        return body
    finally:
        conn.close()


def run_case(port: int, path: str, make_body: Any, expect: tuple[str, int], clients: int, requests: int,
             seconds: float, warmup: int) -> dict[str, Any]:
    """``clients`` threads send ``POST path`` until ``requests`` are sent or ``seconds`` have passed; the body of
    request i is ``make_body(i)``; an answer is right when its ``expect[0]`` list has ``expect[1]`` items."""
    headers = {"Content-Type": "application/json"}
    lock, barrier = threading.Lock(), threading.Barrier(clients + 1)
    latencies: list[float] = []
    errors: list[str] = []
    sent = [0]
    stop_at = [0.0]

    def send(conn: http.client.HTTPConnection, i: int) -> str | None:
        conn.request("POST", path, body=json.dumps(make_body(i)), headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            return f"{resp.status}: {raw[:200].decode(errors='replace')}"
        items = json.loads(raw).get(expect[0])
        if not isinstance(items, list) or len(items) != expect[1]:
            return f"200 without {expect[1]} {expect[0]}"
        return None

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        barrier.wait()
        while True:
            with lock:
                if sent[0] >= requests or time.perf_counter() >= stop_at[0]:
                    break
                i = sent[0] = sent[0] + 1
            start = time.perf_counter()
            try:
                problem = send(conn, i)
            except (OSError, http.client.HTTPException, ValueError) as e:
                problem = f"{type(e).__name__}: {e}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            took = time.perf_counter() - start
            with lock:
                (errors.append(problem) if problem else latencies.append(took))
        conn.close()

    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for i in range(warmup):
        problem = send(warm, 10**6 + i)  # seeds of their own
        if problem:
            errors.append(f"warm-up: {problem}")
    warm.close()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(1000 * s for s in latencies)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else (ms[0] if ms else None)
    return {"clients": clients, "requests": len(ms), "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "seconds": wall, "requests_per_s": len(ms) / wall if wall > 0 else 0.0,
            "p50_ms": statistics.median(ms) if ms else None, "p95_ms": p95,
            "mean_ms": statistics.fmean(ms) if ms else None, "max_ms": ms[-1] if ms else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help=f"a model folder or run folder to serve (default: {DEFAULT_MODEL}, made by `make demo`)")
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8], help="concurrent clients (default: 1 8)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case at most (default: 200)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="no new request of a case after this many seconds (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests before each case (default: 2)")
    parser.add_argument("--images", type=int, default=8, help="images per /generate request (default: 8)")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for /health")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()
    if min(args.clients) < 1 or args.requests < 1 or args.seconds <= 0 or args.warmup < 0 or args.images < 1:
        parser.error("--clients, --requests and --images must be at least 1, --seconds above 0, --warmup at least 0")
    if args.model is None:
        path = ROOT / DEFAULT_MODEL
        if not path.exists():
            sys.exit(f"serve: no model at {DEFAULT_MODEL}: run `make demo` first, or pass --model PATH")
        model = str(path)
    else:
        if not Path(args.model).exists():
            sys.exit(f"serve: no model at {args.model}")
        model = str(Path(args.model).resolve())

    load_start = os.getloadavg()[0]
    try:
        server = Server(model, free_port(), args.startup_timeout)
    except RuntimeError as err:
        sys.exit(f"serve: {err}")
    try:
        info = get(server.port, "/info")
        ops, image = info["operations"], info["image"]
        picture = base64.b64encode(png(int(image["size"]), int(image["channels"]))).decode()
        k = int(info.get("num_classes") or 0)
        cases: dict[str, Any] = {}
        plans = [("classify_1_image", "/classify", lambda i: {"images": [picture], "seed": i}, ("predictions", 1),
                  "classify"),
                 (f"generate_{args.images}_images", "/generate",
                  lambda i: {"labels": [j % max(k, 1) for j in range(args.images)], "seed": i},
                  ("images", args.images), "generate_labels")]
        for name, path, body, expect, operation in plans:
            if not ops.get(operation):
                cases[name] = {"skipped": info["cannot"].get(operation, f"the model cannot {operation}")}
                continue
            cases[name] = {f"clients_{c}": run_case(server.port, path, body, expect, c, args.requests, args.seconds,
                                                    args.warmup) for c in args.clients}
    finally:
        code = server.stop()
    report = {
        "model": args.model or DEFAULT_MODEL, "server": f"python -m lzn serve MODEL --port PORT (exit code {code})",
        "startup_seconds": server.startup_seconds, "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_1min_start": load_start, "load_avg_1min_end": os.getloadavg()[0],
        "defaults": info.get("defaults"), "requests": args.requests, "seconds": args.seconds, "warmup": args.warmup,
        "latency": "ms from sending a request to reading its whole answer, keep-alive connections",
        "cases": cases,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    parts = []
    for name, runs in cases.items():
        label = name.replace("_", " ", 1).replace("_", " ")
        if "skipped" in runs:
            parts.append(f"{label}: skipped ({runs['skipped']})")
            continue
        parts.append(f"{label}: " + ", ".join(
            f"{r['clients']} client{'s' if r['clients'] > 1 else ''} {r['requests_per_s']:.1f} req/s "
            f"(p50 {r['p50_ms'] or 0:.0f} ms, p95 {r['p95_ms'] or 0:.0f} ms)" for r in runs.values()))
    load = max(report["load_avg_1min_start"], report["load_avg_1min_end"])
    print(f"summary: lzn serve {report['model']}: " + "; ".join(parts)
          + f"; load average {load:.1f} on {report['cpus']} CPUs")
    failed = [(name, r) for name, runs in cases.items() if "skipped" not in runs for r in runs.values() if r["errors"]]
    if failed:
        name, r = failed[0]
        sys.exit(f"serve: {sum(r['errors'] for _, r in failed)} requests failed; first ({name}, {r['clients']} "
                 f"clients): {r['first_error']}")


if __name__ == "__main__":
    main()
