"""Prints the benchmark table (Markdown) from the JSON lines of destiny-bench and of
pytorch_autoencoder.py taken in the same run: each workload's time in Destiny and in each
PyTorch variant (eager, compiled), the speed-up against the faster variant, the ratio of a
Destiny epoch to the fp32 floor, and peak device memory.

Usage: python3 table.py DESTINY.jsonl PYTORCH.jsonl
"""

import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def megabytes(row):
    peak = row.get("peak_memory_bytes") if row else None
    return f"{peak / 1e6:.0f}" if peak else "-"


def main():
    destiny, pytorch = rows(sys.argv[1]), rows(sys.argv[2])
    floor = next((d for d in destiny if d["workload"].startswith("fp32 floor")), None)
    if floor:
        print(f"{floor['device']}: {floor['workload']} = {floor['seconds']:.3f} s\n")
    variants = sorted({p.get("variant", "eager") for p in pytorch})
    columns = " | ".join(f"PyTorch {v} (s)" for v in variants)
    print(f"| workload | Destiny (s) | {columns} | speed-up (vs the faster) | Destiny / fp32 floor | peak MB Destiny | peak MB PyTorch |")
    print("| --- | --- | " + "--- | " * len(variants) + "--- | --- | --- | --- |")
    for d in destiny:
        workload = d["workload"]
        if workload.startswith(("fp32 floor", "op ")):
            continue
        runs = {p.get("variant", "eager"): p for p in pytorch if p["workload"] == workload}
        times = " | ".join(f"{runs[v]['seconds']:.3f}" if v in runs else "-" for v in variants)
        best = min(runs.values(), key=lambda p: p["seconds"]) if runs else None
        speedup = f"{best['seconds'] / d['seconds']:.2f}x" if best else "-"
        versus_floor = f"{d['seconds'] / floor['seconds']:.1f}x" if floor and workload.startswith("epoch") else ""
        print(f"| {workload} | {d['seconds']:.3f} | {times} | {speedup} | {versus_floor} | {megabytes(d)} | {megabytes(best)} |")
    operations = [d for d in destiny if d["workload"].startswith("op ")]
    if operations:
        print("\nPer operation, one batch (ms): " + ", ".join(
            f"{d['workload'][3:].replace(' (ms)', '')} {d['seconds']:.3f}" for d in operations))


if __name__ == "__main__":
    main()
