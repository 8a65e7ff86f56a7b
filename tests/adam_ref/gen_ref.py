#!/usr/bin/env python3
"""gen_ref.py: reference vectors of torch.optim.AdamW / torch.optim.Adam (fp32, CPU) for
tests/unit/test_adam_torch.c, written to adam_ref.bin, with adam_ref.txt beside it (the versions,
the cases, and how torch as shipped differs; see "sqrt" below).

    /opt/torch-venv/bin/python tests/adam_ref/gen_ref.py [--out DIR]

Each case starts from parameters drawn from a seeded generator, zero moments, and runs `steps`
optimizer steps of torch's own optimizer (foreach=False; foreach=True is run too and must give the
same bits) with gradients drawn from the same generator; the file keeps the final parameters,
first and second moments, and the parameters converted to bf16 by torch (round to nearest even).
The generator (splitmix64, values built from random bits, no floating-point arithmetic) is
reimplemented by the C test, so the file holds no inputs.

sqrt: torch's CPU sqrt of an fp32 tensor is MKL's vsSqrt (VML_HA) in the x86 wheels, which is not
correctly rounded (+-1 ulp on about 17% of inputs here; MKL is closed and picks its code by CPU).
libzero's sqrt is IEEE's, as is torch's own Vectorized sqrt (builds without MKL, and the fused
optimizer). So the vectors are torch's optimizer with Tensor.sqrt / torch._foreach_sqrt replaced by
the correctly rounded fp32 sqrt (numpy's, checked here against sqrt in double, which rounds to the
same float); every other operation is torch's. How many final values the stock optimizer
gives differently is measured and written to adam_ref.txt.
"""
import argparse
import os
import platform
import struct
import sys

import numpy as np
import torch

MASK = (1 << 64) - 1
MAGIC = b"ZADAMREF"
VERSION = 1

# gradient / parameter kinds (the C test has the same table)
K_NORMAL, K_WIDE, K_TINY, K_HUGE, K_ZERO, K_MIXED, K_CONST, K_ALT = range(8)
# exponent field ranges [lo, hi] of the kinds that draw one
EXP_RANGE = {K_NORMAL: (117, 128), K_WIDE: (60, 190), K_TINY: (0, 24), K_HUGE: (180, 200)}


class Rng:
    """splitmix64: state += golden gamma, then the mix of the output."""

    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def value_bits(kind, r):
    """fp32 bits of one value of `kind` from 64 random bits r: sign bit 63, exponent from bits
    40.., mantissa bits 8..30, the mixed kind's choice bits 32..39."""
    if kind == K_MIXED:
        kind = ((r >> 32) & 0xFF) % 5  # normal, wide, tiny, huge, zero
    sign = (r >> 63) << 31
    if kind == K_ZERO:
        return sign
    lo, hi = EXP_RANGE[kind]
    e = lo + ((r >> 40) & 0xFFFF) % (hi - lo + 1)
    mant = (r >> 8) & 0x7FFFFF
    if kind == K_TINY and ((r >> 32) & 7) == 0:
        return sign  # an eighth of the tiny values are zeros
    return sign | (e << 23) | mant


def draw(rng, kind, n):
    return np.array([value_bits(kind, rng.next()) for _ in range(n)], dtype=np.uint32).view(np.float32)


def grads_of(case, rng, t):
    """Step t's (1-based) gradients: const and alt repeat one vector (alt flips its sign every
    step) drawn from a generator reseeded with seed ^ 0x5bd1e995 each step; the other kinds
    continue the case's generator."""
    n, kind = case["n"], case["gkind"]
    if kind in (K_CONST, K_ALT):
        g = draw(Rng(case["seed"] ^ 0x5BD1E995), K_NORMAL, n)
        if kind == K_ALT and t % 2 == 0:
            g = -g
        return g
    return draw(rng, kind, n)


def ieee_sqrt(x):
    a = x.detach().numpy()
    return torch.from_numpy(np.sqrt(a))


def run_torch(case, foreach, exact_sqrt):
    rng = Rng(case["seed"])
    p0 = draw(rng, case["pkind"], case["n"])
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    cls = torch.optim.AdamW if case["mode"] == 0 else torch.optim.Adam
    opt = cls([p], lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"],
              weight_decay=case["wd"], foreach=foreach)
    saved = (torch.Tensor.sqrt, torch._foreach_sqrt)
    if exact_sqrt:
        torch.Tensor.sqrt = ieee_sqrt
        torch._foreach_sqrt = lambda xs: [ieee_sqrt(x) for x in xs]
    try:
        for t in range(1, case["steps"] + 1):
            p.grad = torch.from_numpy(grads_of(case, rng, t).copy())
            opt.step()
    finally:
        torch.Tensor.sqrt, torch._foreach_sqrt = saved
    st = opt.state[p]
    return (p.detach().numpy().copy(), st["exp_avg"].numpy().copy(),
            st["exp_avg_sq"].numpy().copy(),
            p.detach().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).copy())


# hyperparameter sets: lr, beta1, beta2, eps, weight_decay
H = {
    "default": (1e-3, 0.9, 0.999, 1e-8, 1e-2),
    "nodecay": (1e-3, 0.9, 0.999, 1e-8, 0.0),
    "gpt": (3e-4, 0.9, 0.95, 1e-8, 0.1),
    "fast": (1e-2, 0.8, 0.99, 1e-6, 0.5),
    "lowbeta": (0.1, 0.3, 0.5, 1e-3, 1e-4),  # 1 - beta1 >= 0.5: lerp's other branch
    "half": (1e-3, 0.5, 0.999, 1e-8, 0.05),  # 1 - beta1 = 0.5 exactly: the other branch too
    # beta1 = 0 (1 - beta1 = 1): torch's lerp kernels disagree on the sign of a zero moment
    # (vector body: g + 0 * d, scalar tail: g - d * 0), so its gradients have no zeros
    "zerobeta": (5e-5, 0.0, 0.0, 1e-12, 0.2),
    # beta2 = 0: an inf v (an overflowing g * g) times 0 is nan, and the parameter follows
    "zerobeta2": (1e-3, 0.9, 0.0, 1e-8, 0.01),
    "biglr": (2.0, 0.95, 0.9999, 1e-10, 0.3),
    "exact": (2.0**-10, 0.875, 1.0 - 2.0**-9, 2.0**-27, 2.0**-6),  # all exact in fp32
}


def cases():
    out = []
    seed = 1000

    def add(mode, hname, steps, gkind, pkind=K_NORMAL, n=67):
        nonlocal seed
        lr, b1, b2, eps, wd = H[hname]
        seed += 1
        out.append(dict(mode=mode, n=n, steps=steps, pkind=pkind, gkind=gkind, seed=seed,
                        lr=lr, beta1=b1, beta2=b2, eps=eps, wd=wd, hname=hname))

    for mode in (0, 1):
        for steps in (1, 7, 100, 1000):
            add(mode, "default", steps, K_NORMAL)
        add(mode, "nodecay", 7, K_MIXED)
        add(mode, "nodecay", 100, K_MIXED)
        add(mode, "gpt", 1000, K_MIXED, n=35)
        add(mode, "gpt", 100, K_CONST)
        add(mode, "gpt", 100, K_ALT)
        add(mode, "fast", 7, K_WIDE)
        add(mode, "fast", 100, K_WIDE, pkind=K_WIDE)
        add(mode, "lowbeta", 7, K_NORMAL)
        add(mode, "lowbeta", 1000, K_MIXED, n=35)
        add(mode, "half", 100, K_ALT)
        add(mode, "zerobeta", 7, K_WIDE)
        add(mode, "zerobeta2", 7, K_MIXED)
        add(mode, "biglr", 7, K_TINY, pkind=K_TINY)
        add(mode, "biglr", 100, K_TINY)
        add(mode, "exact", 7, K_HUGE)
        add(mode, "exact", 100, K_NORMAL, n=200)
        add(mode, "default", 7, K_ZERO)
        add(mode, "default", 7, K_NORMAL, pkind=K_ZERO)
        add(mode, "default", 1000, K_CONST, n=1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    torch.set_num_threads(1)

    # numpy's fp32 sqrt is the correctly rounded one (sqrt in double rounds to the same float)
    chk = Rng(7)
    x = np.array([chk.next() >> 33 for _ in range(1 << 16)], dtype=np.uint32).view(np.float32)
    x = np.abs(x[np.isfinite(x)])
    assert (np.sqrt(x).view(np.uint32) == np.sqrt(x.astype(np.float64)).astype(np.float32).view(np.uint32)).all()
    stock_bad = int((torch.from_numpy(x).sqrt().numpy().view(np.uint32) != np.sqrt(x).view(np.uint32)).sum())

    cs = cases()
    blob = bytearray()
    ver = torch.__version__.encode()[:31]
    blob += MAGIC + struct.pack("<II", VERSION, len(cs)) + ver.ljust(32, b"\0")
    lines = []
    total_stock_diff = 0
    total_vals = 0
    for c in cs:
        ref = run_torch(c, foreach=False, exact_sqrt=True)
        fe = run_torch(c, foreach=True, exact_sqrt=True)
        for a, b in zip(ref, fe):
            assert a.tobytes() == b.tobytes(), f"foreach=True differs from foreach=False: {c}"
        stock = run_torch(c, foreach=False, exact_sqrt=False)
        diff = sum(int((a.view(np.uint32) != b.view(np.uint32)).sum()) for a, b in zip(ref[:3], stock[:3]))
        total_stock_diff += diff
        total_vals += 3 * c["n"]
        blob += struct.pack("<6IQ5d", c["mode"], c["n"], c["steps"], c["pkind"], c["gkind"], 0,
                            c["seed"], c["lr"], c["beta1"], c["beta2"], c["eps"], c["wd"])
        for a in ref[:3]:
            blob += a.astype("<f4").tobytes()
        blob += ref[3].astype("<u2").tobytes()
        lines.append(f"  {'adamw' if c['mode'] == 0 else 'adam-l2':7s} {c['hname']:8s} n={c['n']:<3d} "
                     f"steps={c['steps']:<4d} params={c['pkind']} grads={c['gkind']} seed={c['seed']} "
                     f"stock-torch values differing: {diff}/{3 * c['n']}")
    with open(os.path.join(args.out, "adam_ref.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(args.out, "adam_ref.txt"), "w") as f:
        f.write(
            "adam_ref.bin: torch.optim.AdamW (mode 0) / torch.optim.Adam with weight_decay (mode 1,\n"
            "Adam-L2) on fp32 CPU tensors, written by gen_ref.py (read its docstring; the format is\n"
            "in tests/unit/test_adam_torch.c).\n"
            f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
            f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}\n"
            f"{len(cs)} cases, {len(blob)} bytes; foreach=True gave the same bits as foreach=False "
            "in every case.\n"
            "Reference = torch's optimizer with the correctly rounded fp32 sqrt (see gen_ref.py).\n"
            f"torch's stock fp32 sqrt differed from it on {stock_bad} of {len(x)} random finite "
            "inputs;\n"
            f"the stock optimizer's final p/m/v differ from the reference in {total_stock_diff} of "
            f"{total_vals} values.\n"
            "kinds: 0 normal, 1 wide, 2 tiny (subnormals, zeros), 3 huge, 4 zero, 5 mixed, 6 const, "
            "7 alternating\n")
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(cs)} cases, {len(blob)} bytes; stock torch differs in {total_stock_diff}/{total_vals}")


if __name__ == "__main__":
    sys.exit(main())
