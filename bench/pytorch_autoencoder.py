"""PyTorch reference for Destiny's benchmark: DSSTNE's MovieLens autoencoder (EmbeddingBag
input, dense output layer, binary cross entropy, sparseness penalty, denoising, SGD), timed
the same way as `destiny-bench` on the same exported data, written as fast as PyTorch
honestly gets for the same work: the dataset kept on the device (as Destiny keeps it), batches
gathered there without a host sync, the cross entropy of sparse targets computed without a
dense target (softplus of every logit minus the logits of the targets: the same value and
gradient as BCE with logits), fused SGD, the loss read every 32 batches, and top-K on the
masked logits (the sigmoid is monotonic). Two variants, both reported: `eager`, and
`compiled` (the dense part, hidden activation to loss, under torch.compile).

Usage: python pytorch_autoencoder.py DATA_DIR --device cpu|cuda --batch 256,1024
       [--variants eager,compiled] [--threads N]
Prints one JSON object per result line.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(folder):
    shape = json.load(open(f"{folder}/shape.json"))
    offsets = np.fromfile(f"{folder}/offsets.i64", dtype=np.int64)
    indices = np.fromfile(f"{folder}/indices.i32", dtype=np.int32).astype(np.int64)
    return shape, torch.from_numpy(offsets), torch.from_numpy(indices)


class Autoencoder(torch.nn.Module):
    def __init__(self, items, hidden):
        super().__init__()
        self.encoder = torch.nn.EmbeddingBag(items, hidden, mode="sum")
        self.hidden_bias = torch.nn.Parameter(torch.zeros(hidden))
        self.decoder = torch.nn.Linear(hidden, items)
        limit = (6.0 / (items + hidden)) ** 0.5
        for weight in (self.encoder.weight, self.decoder.weight):
            torch.nn.init.uniform_(weight, -limit, limit)
        torch.nn.init.zeros_(self.decoder.bias)


def dense_part(hidden_sums, hidden_bias, weight, bias):
    """Hidden activation, output logits, the error of every unit as if its target were 0
    (softplus), and the sparseness penalty (p 0.5, beta 2)."""
    hidden = torch.sigmoid(hidden_sums + hidden_bias)
    logits = F.linear(hidden, weight, bias)
    rho = hidden.mean(0).clamp(1e-7, 1 - 1e-7)
    p, beta = 0.5, 2.0
    penalty = beta * (p * torch.log(p / rho) + (1 - p) * torch.log((1 - p) / (1 - rho))).sum()
    return logits, F.softplus(logits).sum(), penalty


def scores_part(hidden_sums, hidden_bias, weight, bias):
    """The output logits of a prediction batch."""
    return F.linear(torch.sigmoid(hidden_sums + hidden_bias), weight, bias)


class Rows:
    """A CSR dataset on the device, with its offsets also on the host (for slicing)."""

    def __init__(self, offsets, indices, device):
        self.host_offsets = offsets
        self.offsets = offsets.to(device)
        self.indices = indices.to(device)
        self.device = device

    def shuffled(self, order):
        """The rows in `order` (a host permutation), gathered on the device."""
        lengths = self.host_offsets[1:] - self.host_offsets[:-1]
        new_lengths = lengths[order]
        new_offsets = torch.zeros(len(order) + 1, dtype=torch.int64)
        new_offsets[1:] = torch.cumsum(new_lengths, 0)
        total = int(new_offsets[-1])
        order_d, lengths_d = order.to(self.device), new_lengths.to(self.device)
        starts = torch.repeat_interleave(self.offsets[:-1][order_d] - new_offsets[:-1].to(self.device),
                                         lengths_d, output_size=total)
        gather = starts + torch.arange(total, device=self.device)
        rows = Rows.__new__(Rows)
        rows.host_offsets, rows.offsets = new_offsets, new_offsets.to(self.device)
        rows.indices, rows.device = self.indices[gather], self.device
        return rows

    def batch(self, first, last):
        """Rows first..last: their offsets from 0, indices and row of each entry."""
        start, end = int(self.host_offsets[first]), int(self.host_offsets[last])
        offsets = self.offsets[first:last] - start
        lengths = self.offsets[first + 1:last + 1] - self.offsets[first:last]
        rows = torch.repeat_interleave(torch.arange(last - first, device=self.device), lengths,
                                       output_size=end - start)
        return offsets, self.indices[start:end], rows


def train_epoch(model, dense, optimizer, data, users, batch, generator):
    rows = data.shuffled(torch.randperm(users, generator=generator))
    total = torch.zeros((), device=data.device)
    for b, first in enumerate(range(0, users, batch)):
        last = min(first + batch, users)
        offsets, indices, row_ids = rows.batch(first, last)
        n = last - first
        keep = (torch.rand(indices.shape[0], device=data.device) >= 0.2).float() / 0.8
        sums = model.encoder(indices, offsets, per_sample_weights=keep)
        logits, as_zeros, penalty = dense(sums, model.hidden_bias, model.decoder.weight,
                                          model.decoder.bias)
        # BCE with logits of 0/1 targets: softplus(x) for every unit, minus x at the targets.
        error = as_zeros - logits[row_ids, indices].sum()
        loss = error / n + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += error.detach()
        if b % 32 == 31:
            total.item()
    return total.item()


@torch.no_grad()
def predict(model, scores, data, users, k, batch=1024):
    results = []
    for first in range(0, users, batch):
        last = min(first + batch, users)
        offsets, indices, row_ids = data.batch(first, last)
        ones = torch.ones(indices.shape[0], device=data.device)
        sums = model.encoder(indices, offsets, per_sample_weights=ones)
        logits = scores(sums, model.hidden_bias, model.decoder.weight, model.decoder.bias)
        logits[row_ids, indices] = -float("inf")
        top = torch.topk(logits, k, dim=1)
        results.append((top.indices, torch.sigmoid(top.values)))
    return torch.cat([i for i, _ in results]).cpu()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", default="256")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--variants", default="eager,compiled",
                        help="comma-separated: eager, compiled (torch.compile of the dense part)")
    parser.add_argument("--precision", default="fp32",
                        help="dense products, comma-separated: fp32, tf32, bf16 (torch.set_float32_matmul_precision)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape, offsets, indices = load(args.data)
    users, items = shape["rows"], shape["width"]
    data = Rows(offsets, indices, device)
    name = f"cpu ({torch.get_num_threads()} threads)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    batches = [int(b) for b in args.batch.split(",")]
    for variant in args.variants.split(","):
        for precision in args.precision.split(","):
            torch.set_float32_matmul_precision({"fp32": "highest", "tf32": "high", "bf16": "medium"}[precision])
            suffix = "" if precision == "fp32" else f", {precision}"
            run(args, device, name, data, users, items, batches, suffix, variant)


def run(args, device, name, data, users, items, batches, suffix, variant):
    compiled = variant == "compiled"
    dense = torch.compile(dense_part) if compiled else dense_part
    scores = torch.compile(scores_part) if compiled else scores_part
    for batch in batches:
        torch.manual_seed(1)
        generator = torch.Generator().manual_seed(1)
        model = Autoencoder(items, args.hidden).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate,
                                    fused=device.type == "cuda")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        # The first epoch warms up (and compiles).
        for epoch in range(args.epochs + 1):
            sync(device)
            start = time.perf_counter()
            train_epoch(model, dense, optimizer, data, users, batch, generator)
            sync(device)
            if epoch > 0:
                times.append(time.perf_counter() - start)
        result = {"system": "pytorch", "variant": variant, "device": name,
                  "workload": f"epoch, batch {batch}{suffix}", "seconds": statistics.median(times)}
        if device.type == "cuda":
            result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        print(json.dumps(result), flush=True)
        if args.top_k and batch == batches[0]:
            times = []
            for run in range(args.epochs + 1):  # a warm-up pass, then the timed ones
                sync(device)
                start = time.perf_counter()
                top = predict(model, scores, data, users, args.top_k)
                sync(device)
                if run > 0:
                    times.append(time.perf_counter() - start)
            assert top.shape == (users, args.top_k)
            print(json.dumps({"system": "pytorch", "variant": variant, "device": name,
                              "workload": f"top-{args.top_k} for all users{suffix}",
                              "seconds": statistics.median(times)}), flush=True)


if __name__ == "__main__":
    main()
