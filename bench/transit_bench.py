#!/usr/bin/env python3
"""Transit benchmark: encrypt and decrypt of 1 KiB, and batches of 100, on one vaultd node, against the raw
AES-GCM rate of `cryptography` and the bare aiohttp ceiling, all measured in the same run.

    transit_bench.py [-d SECONDS] [-c 1,8,32] [--out FILE]

The load generator is ../shared/bench/loadgen.py, the one harness for every target: this script registers one
more target with it (`vault-transit`, ops encrypt, decrypt, encrypt-batch100) and calls its main. Servers
are started here and stopped by PID; every run is bounded in time.
"""

import argparse
import base64
import json
import os
import pathlib
import subprocess
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(SHARED))
sys.path.insert(0, str(ROOT / "bench"))
import loadgen  # noqa: E402
from kv_bench import TOKEN, free_port, run_json_lines, wait_up  # noqa: E402

PLAINTEXT = base64.b64encode(os.urandom(1024)).decode()
BATCH = [{"plaintext": PLAINTEXT} for _ in range(100)]


class TransitTarget(loadgen.Target):
    ops = ("encrypt", "decrypt", "encrypt-batch100")

    def __init__(self, args):
        super().__init__(args)
        self.url = args.url.rstrip("/")
        self.headers = {"X-Vault-Token": args.token, **loadgen.JSON_HDR}
        self.ciphertext = ""

    async def setup(self, session):
        async with session.post(f"{self.url}/v1/transit/encrypt/bench", headers=self.headers,
                                data=json.dumps({"plaintext": PLAINTEXT})) as response:
            self.ciphertext = json.loads(await response.read())["data"]["ciphertext"]

    def write_op(self):
        return "encrypt"

    async def do(self, session, op, ki, wid):
        if op == "decrypt":
            path, body = "decrypt", {"ciphertext": self.ciphertext}
        elif op == "encrypt-batch100":
            path, body = "encrypt", {"batch_input": BATCH}
        else:
            path, body = "encrypt", {"plaintext": PLAINTEXT}
        async with session.post(f"{self.url}/v1/transit/{path}/bench", headers=self.headers,
                                data=json.dumps(body)) as response:
            raw = await response.read()
            return None if response.status == 200 else f"http {response.status}: {raw[:120]!r}"


loadgen.TARGETS["vault-transit"] = TransitTarget


def raw_aes_gcm_rate(seconds: float = 2.0) -> dict:
    """1 KiB AES-256-GCM encryptions per second in this process, one core: the crypto floor."""
    aead, data, count = AESGCM(os.urandom(32)), os.urandom(1024), 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        aead.encrypt(os.urandom(12), data, None)
        count += 1
    return {"tool": "transit_bench", "target": "cryptography", "op": "aes-gcm-encrypt-1KiB",
            "ops_per_s": round(count / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--duration", type=float, default=4.0)
    parser.add_argument("-c", "--concurrency", default="1,8,32")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args()
    records = [raw_aes_gcm_rate()]
    records += _ceiling(args)
    records += _vaultd(args)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as file:
            file.writelines(json.dumps(record) + "\n" for record in records)
    print(_table(records))
    return 1 if any(record.get("errors") for record in records) else 0


def _ceiling(args) -> list[dict]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SHARED / "ceiling_server.py"), "--port", str(port),
                                "--token", TOKEN, "--max-seconds", "600"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{port}/get")
        return run_json_lines([sys.executable, str(SHARED / "loadgen.py"), "http-ceiling", "post",
                               "--url", f"http://127.0.0.1:{port}", "-c", args.concurrency,
                               "-d", str(args.duration), "--pids", str(process.pid), "--label", "ceiling"])
    finally:
        process.terminate()
        process.wait(timeout=15)


def _vaultd(args) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "vaultd", "server", "--dev", "--dev-root-token-id", TOKEN,
                                "--dev-listen-address", f"127.0.0.1:{port}"], env={**os.environ,
                               "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url + "/v1/sys/health")
        _request(url, "sys/mounts/transit", {"type": "transit"})
        return run_json_lines([sys.executable, __file__, "--loadgen", "vault-transit",
                               "encrypt,decrypt,encrypt-batch100", "--url", url, "--token", TOKEN,
                               "-c", args.concurrency, "-d", str(args.duration), "--prefill", "no",
                               "--pids", str(process.pid), "--label", "vaultd"])
    finally:
        process.terminate()
        process.wait(timeout=15)


def _request(url: str, path: str, body: dict) -> None:
    import urllib.request

    request = urllib.request.Request(f"{url}/v1/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"X-Vault-Token": TOKEN, "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


def _table(records: list[dict]) -> str:
    aes = next(r["ops_per_s"] for r in records if r.get("target") == "cryptography")
    ceiling = {r["concurrency"]: r["ops_per_s"] for r in records if r.get("label") == "ceiling"}
    lines = [f"raw AES-256-GCM encrypt of 1 KiB, one core: {aes:,.0f}/s", "",
             "| op | c | vaultd req/s | p50 ms | p99 ms | ceiling req/s | vaultd ÷ ceiling | items/s ÷ raw AES |",
             "|---|---|---|---|---|---|---|---|"]
    for record in sorted((r for r in records if r.get("label") == "vaultd"), key=lambda r: (r["op"], r["concurrency"])):
        items = record["ops_per_s"] * (100 if record["op"] == "encrypt-batch100" else 1)
        top = ceiling.get(record["concurrency"]) or float("nan")
        lines.append(f"| {record['op']} | {record['concurrency']} | {record['ops_per_s']:,.0f} | {record['p50_ms']} | "
                     f"{record['p99_ms']} | {top:,.0f} | {record['ops_per_s'] / top:.2f} | {items / aes:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        sys.exit(loadgen.main(sys.argv[2:]))
    sys.exit(main())
