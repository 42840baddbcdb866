"""PyTorch's single-thread f32 matrix-product rate at the shapes of a training step, the same
shapes as crates/kernels/examples/gemm_rate.rs (the ceiling of issue 11). One line per shape
in GFLOP/s."""
import time

import torch

SHAPES = [
    ("gru step h·U, batch 64, H 128", 64, 128, 384),
    ("lstm step h·U, batch 64, H 128", 64, 128, 512),
    ("projection, 64 rows x 22 tokens, d 64", 1408, 64, 64),
    ("feed-forward in, d 64 -> 256", 1408, 64, 256),
    ("feed-forward out, 256 -> 64", 1408, 256, 64),
    ("attention scores, one head, 22 x 16 x 22", 22, 16, 22),
]


def rate(flops, f):
    f()
    best = 0.0
    for _ in range(3):
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < 0.3:
            f()
            reps += 1
        best = max(best, flops * reps / (time.perf_counter() - start) / 1e9)
    return best


def main():
    torch.set_num_threads(1)
    print("shape | PyTorch GFLOP/s")
    for what, m, k, n in SHAPES:
        a, b = torch.rand(m, k), torch.rand(k, n)
        out = torch.empty(m, n)
        print(f"{what} [{m}x{k}]x[{k}x{n}] | {rate(2.0 * m * k * n, lambda: torch.matmul(a, b, out=out)):.1f}")


if __name__ == "__main__":
    main()
