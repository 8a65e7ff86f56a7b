#!/usr/bin/env python3
"""gpt2_torch.py — the GPT-2 style model of examples/gpt2 (zero-gpt2) in PyTorch, trained the
same way on the CPU, as the reference side of benchmarks/gpt2_vs_torch.sh.

Model (examples/gpt2/model.h): pre-LayerNorm GPT-2, byte vocabulary (V = 256), learned positions
wpe (T, C), per block LN1 -> qkv (3C, C) linear (q, k, v blocks, heads side by side) -> causal
softmax attention, scale 1/sqrt(hs) -> proj (C, C) -> residual; LN2 -> fc (4C, C) -> GELU (tanh
approximation) -> proj (C, 4C) -> residual; final LayerNorm (eps 1e-5 everywhere), lm head tied to
wte, mean cross-entropy of the next byte.

Training (examples/gpt2/gpt2.c): AdamW (torch.optim.AdamW) lr 2e-3, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01 on the matrices and embeddings, none on biases and LayerNorm parameters; global
gradient-norm clipping to 1.0; the global batch of --batch sequences split evenly over --np
processes (torch.multiprocessing spawn, gloo, DistributedDataParallel), one thread each.

Initialisation and data reproduce zero-gpt2's exactly (its counter-based RNG of model.c,
re-implemented below with numpy): the same N(0, 0.02) / N(0, 0.02 / sqrt(2L)) weights, and every
step the same random (T + 1)-byte windows of the same corpus, so at the same --seed the loss
curves of the two programs agree (to fp32 rounding, which grows over the steps). --data-rng
torch draws windows with numpy's generator instead.

Throughput: ms/step is the median, over the steps after --warmup, of rank 0's wall time for one
step (draw the batch, forward, backward with DDP's all-reduce, clip, AdamW, all-reduce of the
loss for printing), the same span zero-gpt2's per-step "ms" covers. Model FLOPs per rank and
step, B_r = --batch / --np sequences per rank, N_r = B_r * T tokens per rank:
    forward  = 2 * N_r * (12 * L * C^2 + V * C)       matrix products: qkv 3C^2, proj C^2,
                                                       fc 4C^2, fc proj 4C^2 per layer; lm head VC
             + L * 2 * 2 * B_r * NH * T * T * hs       attention: Q K^T and P V over the full
                                                       T x T square (= 4 * B_r * T^2 * C per layer)
    step     = 3 * forward                             (backward = 2 x forward)
Biases, LayerNorm, GELU, softmax, embeddings and the optimizer are not counted. GFLOP/s per rank
= step FLOPs / (ms/step). The last line printed is machine-readable:
    torch ms_per_step=X gflops=Y loss=Z
(Z: the mean loss of the last step over all ranks, as zero-gpt2's "final loss").

    /opt/torch-venv/bin/python benchmarks/gpt2_torch.py --np 2 --layers 8 --heads 4 --dim 128 \
        --seq 64 --batch 8 --steps 40 --warmup 5
"""
import argparse
import math
import os
import socket
import statistics
import sys
import time

# One thread per process, set before torch (and its OpenMP runtime) loads; spawned children
# re-import this module and inherit the environment as well.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

VOCAB = 256
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "examples", "gpt2", "data", "corpus.txt")

# ---- zero-gpt2's counter-based RNG (examples/gpt2/model.c), uint64 arithmetic ---------------
M64 = (1 << 64) - 1
RNG_INIT, RNG_DATA = 11, 12


def scramble64(x):
    """model.c scramble64 on a Python int."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    x ^= x >> 33
    return x


def rng_key(key, counter):
    """model.c gpt2_rng_key on Python ints."""
    return scramble64((key + 0x9E3779B97F4A7C15 * (counter + 1) + scramble64(counter ^ key)) & M64)


def scramble64_np(x):
    """scramble64 on a uint64 array (numpy arrays wrap around silently)."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    x = x ^ (x >> np.uint64(33))
    return x


def rng_key_np(key, counter):
    """gpt2_rng_key(key, counter[i]) for a scalar key (int or uint64 array) and a uint64 array."""
    key = np.asarray(key, dtype=np.uint64)
    return scramble64_np(key + np.uint64(0x9E3779B97F4A7C15) * (counter + np.uint64(1)) +
                         scramble64_np(counter ^ key))


def rng_normal_np(keys):
    """model.c rng_normal: Box-Muller in double, rounded to float32."""
    u1 = ((rng_key_np(keys, np.zeros_like(keys)) >> np.uint64(11)).astype(np.float64) + 1.0) * \
        (1.0 / 9007199254740992.0)
    u2 = (rng_key_np(keys, np.ones_like(keys)) >> np.uint64(11)).astype(np.float64) * \
        (1.0 / 9007199254740992.0)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)).astype(np.float32)


def batch_windows(text, T, seed, step, row0, rows, micro=0):
    """model.c gpt2_batch: start offsets of rows [row0, row0 + rows) of the global batch."""
    key = rng_key(rng_key(rng_key(seed, RNG_DATA), step), micro)
    starts = len(text) - T
    return [rng_key(key, row0 + r) % starts for r in range(rows)]


# ---- the model --------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.qkv = nn.Linear(C, 3 * C)        # weight (3C, C): q rows, k rows, v rows
        self.attn_proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        self.fc = nn.Linear(C, 4 * C)         # weight (4C, C)
        self.fc_proj = nn.Linear(4 * C, C)    # weight (C, 4C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        # heads side by side within each of q, k, v: (B, T, NH, hs) -> (B, NH, T, hs)
        q = q.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        k = k.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        v = v.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        x = x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        return x


class GPT2(nn.Module):
    def __init__(self, L, NH, C, T):
        super().__init__()
        self.wte = nn.Parameter(torch.empty(VOCAB, C))
        self.wpe = nn.Parameter(torch.empty(T, C))
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.lnf = nn.LayerNorm(C, eps=1e-5)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        x = self.wte[tokens] + self.wpe[:T]
        for block in self.h:
            x = block(x)
        logits = F.linear(self.lnf(x), self.wte)  # tied lm head
        return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))

    def layout(self):
        """(tensor, init kind) in zero-gpt2's flat layout order (model.c block_slots)."""
        out = [(self.wte, "w"), (self.wpe, "w")]
        for b in self.h:
            out += [(b.ln1.weight, "1"), (b.ln1.bias, "0"), (b.qkv.weight, "w"), (b.qkv.bias, "0"),
                    (b.attn_proj.weight, "r"), (b.attn_proj.bias, "0"), (b.ln2.weight, "1"),
                    (b.ln2.bias, "0"), (b.fc.weight, "w"), (b.fc.bias, "0"),
                    (b.fc_proj.weight, "r"), (b.fc_proj.bias, "0")]
        out += [(self.lnf.weight, "1"), (self.lnf.bias, "0")]
        return out

    @torch.no_grad()
    def init_like_zero(self, L, seed):
        """model.c gpt2_params_init: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2L)),
        biases 0, LayerNorm weights 1, each value keyed by (seed, flat index)."""
        key = rng_key(seed, RNG_INIT)
        std = np.float32(0.02)
        std_res = np.float32(0.02) / np.sqrt(np.float32(2.0) * np.float32(L))
        offset = 0
        for t, kind in self.layout():
            n = t.numel()
            if kind in "wr":
                idx = np.arange(offset, offset + n, dtype=np.uint64)
                w = (std if kind == "w" else std_res) * rng_normal_np(rng_key_np(key, idx))
                t.copy_(torch.from_numpy(w.reshape(tuple(t.shape))))
            else:
                t.fill_(1.0 if kind == "1" else 0.0)
            offset += n
        assert offset == sum(p.numel() for p in self.parameters())


def step_flops_per_rank(L, NH, C, T, rows):
    """Model FLOPs of one training step on one rank (see the module docstring)."""
    hs = C // NH
    fwd = 2 * rows * T * (12 * L * C * C + VOCAB * C) + L * 2 * 2 * rows * NH * T * T * hs
    return 3 * fwd


# ---- training ---------------------------------------------------------------------------------


def worker(rank, args, port, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dist.init_process_group("gloo", rank=rank, world_size=args.np)
    world = args.np
    rows = args.batch // world
    row0 = rank * rows
    L, NH, C, T = args.layers, args.heads, args.dim, args.seq

    with open(args.data, "rb") as f:
        text = np.frombuffer(f.read(), dtype=np.uint8)
    if len(text) <= T:
        raise SystemExit(f"gpt2_torch: {args.data} has {len(text)} bytes; --seq {T} needs more")
    offs = np.arange(T + 1)
    np_rng = np.random.default_rng([args.seed, rank])

    torch.manual_seed(args.seed)
    model = GPT2(L, NH, C, T)
    model.init_like_zero(L, args.seed)  # identical on every rank (DDP also broadcasts rank 0's)
    nparams = sum(p.numel() for p in model.parameters())
    ddp = DDP(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]     # matrices, wte, wpe
    no_decay = [p for p in model.parameters() if p.dim() < 2]   # biases, LayerNorm
    opt_kw = {}
    if args.adamw != "default":
        opt_kw[args.adamw] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **opt_kw)
    flops = step_flops_per_rank(L, NH, C, T, rows)
    if rank == 0:
        print(f"gpt2_torch: torch {torch.__version__}, {L} layers, {NH} heads, dim {C}, seq {T}, "
              f"{nparams} parameters | {args.data}: {len(text)} bytes | {world} process(es), "
              f"gloo DDP, {torch.get_num_threads()} thread(s) each | batch {args.batch} ({rows} "
              f"per rank), lr {args.lr:g}, wd {args.wd:g}, clip {args.clip:g}, AdamW "
              f"{args.adamw} | {flops / 1e9:.4f} GFLOP per rank per step", flush=True)

    times, loss = [], float("nan")
    for step in range(args.steps):
        t0 = time.perf_counter()
        if args.data_rng == "zero":
            starts = np.array(batch_windows(text, T, args.seed, step, row0, rows), dtype=np.int64)
        else:
            starts = np_rng.integers(0, len(text) - T, size=rows)
        win = torch.from_numpy(text[starts[:, None] + offs].astype(np.int64))
        tokens, targets = win[:, :-1].contiguous(), win[:, 1:].contiguous()
        loss_t = ddp(tokens, targets)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        ls = loss_t.detach().clone()
        dist.all_reduce(ls)
        loss = ls.item() / world
        ms = (time.perf_counter() - t0) * 1e3
        times.append(ms)
        if rank == 0 and not args.quiet:
            print(f"step {step + 1:4d}/{args.steps} | loss {loss:.4f} | grad norm {norm.item():.4f}"
                  f" | {args.batch * T / (ms * 1e-3):.0f} tok/s | {ms:.1f} ms", flush=True)
    dist.destroy_process_group()
    if rank == 0:
        results.put((times, loss, flops))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="global sequences per step, all ranks")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5, help="first steps left out of the median")
    ap.add_argument("--np", type=int, default=2, help="processes (ranks)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--data-rng", choices=["zero", "torch"], default="zero",
                    help="zero: zero-gpt2's exact windows (default); torch: numpy's generator")
    ap.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default",
                    help="torch.optim.AdamW implementation (default: torch's choice)")
    ap.add_argument("--quiet", action="store_true", help="no per-step lines")
    args = ap.parse_args()
    if args.dim % args.heads:
        ap.error(f"--heads {args.heads} does not divide --dim {args.dim}")
    if args.np < 1 or args.batch % args.np:
        ap.error(f"--batch {args.batch} is not a multiple of --np {args.np}")
    if not 0 <= args.warmup < args.steps:
        ap.error("need 0 <= --warmup < --steps")

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.spawn(worker, args=(args, port, results), nprocs=args.np, join=True)
    times, loss, flops = results.get()
    ms = statistics.median(times[args.warmup:])
    gflops = flops / (ms * 1e-3) / 1e9
    print(f"torch ms_per_step={ms:.3f} gflops={gflops:.3f} loss={loss:.6f}")
    return 0 if math.isfinite(loss) else 1


if __name__ == "__main__":
    sys.exit(main())
