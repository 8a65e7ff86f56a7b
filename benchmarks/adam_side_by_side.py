#!/usr/bin/env python3
"""adam_side_by_side.py: libzero's CPU AdamW beside DeepSpeedCPUAdam and torch.optim.AdamW.

One process, the same fp32 arrays (parameter, gradient, first and second moment) for every
implementation, interleaved rounds: in each round every implementation does one optimizer step on
those arrays (the order rotates from round to round), and its time is taken with
time.perf_counter around that step alone. Reported: the best (minimum) and the median time of each
over the rounds, and time ratios against libzero (> 1: libzero faster).

  libzero   zk_adamw_cpu through ctypes (build/lib/libzero_adam_bench.so, benchmarks/adam_ctypes.c),
            no working copy (the others write none either)
  ds        deepspeed.ops.adam.DeepSpeedCPUAdam(adamw_mode=True) (its JIT-built cpu_adam op)
  fused     torch.optim.AdamW(fused=True)
  foreach   torch.optim.AdamW() (the default, foreach) -- only with --torch-default

Every implementation keeps its optimizer state in the shared m and v (the optimizers' state
dictionaries are pre-filled with them), so all of them read and write the same four arrays, 16
bytes read and 12 written per element. The arrays start --align bytes past a page boundary
(0: page-aligned; 64: one cache line past, where torch's own allocator puts large tensors).

Threads: torch.set_num_threads(T) for torch and DeepSpeed (DeepSpeed's op runs OpenMP loops in the
calling thread's team) and omp_set_num_threads(T) in libzero's entry point; the script checks that
a single OpenMP runtime is loaded, so both set the same thing.

Needs torch; DeepSpeed is optional (skipped with a message when it cannot be imported or its op
cannot be built). Example:

  /opt/torch-venv/bin/python benchmarks/adam_side_by_side.py --lib build/lib/libzero_adam_bench.so
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

HP = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
PAGE = 4096


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip()
    if s[-1:].upper() in mult:
        return int(s[:-1]) * mult[s[-1:].upper()]
    return int(s)


def parse_list(s, conv):
    return [conv(x) for x in s.split(",") if x.strip()]


def aligned_f32(torch, n, align, keep):
    """An (n,) float32 tensor whose first element lies `align` bytes past a page boundary."""
    buf = torch.empty(n * 4 + 2 * PAGE, dtype=torch.uint8)
    keep.append(buf)
    off = (align - buf.data_ptr()) % PAGE
    t = buf[off:off + n * 4].view(torch.float32)
    assert t.data_ptr() % PAGE == align
    return t


def openmp_runtimes():
    """The OpenMP runtime libraries mapped into this process."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if base.startswith(("libgomp", "libiomp", "libomp")):
                    libs.add(path)
    except OSError:
        pass
    return sorted(libs)


class Libzero:
    name = "libzero"

    def __init__(self, lib, arrays, threads):
        self.lib, self.a, self.threads, self.t = lib, arrays, threads, 0

    def step(self):
        self.t += 1
        p, g, m, v = self.a
        rc = self.lib.zb_adamw_step(
            ctypes.c_void_p(p.data_ptr()), ctypes.c_void_p(m.data_ptr()),
            ctypes.c_void_p(v.data_ptr()), ctypes.c_void_p(g.data_ptr()), None, 0,
            ctypes.c_size_t(p.numel()), HP["lr"], HP["beta1"], HP["beta2"], HP["eps"],
            HP["weight_decay"], ctypes.c_int64(self.t), 0, self.threads)
        if rc != 0:
            raise RuntimeError("zb_adamw_step failed")


class TorchOpt:
    """A torch.optim-style optimizer whose state for the parameter is the shared m and v."""

    def __init__(self, name, opt, param, m, v, step0):
        self.name, self.opt = name, opt
        opt.state[param] = {"step": step0, "exp_avg": m, "exp_avg_sq": v}

    def step(self):
        self.opt.step()


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.zb_adamw_step.restype = ctypes.c_int
    lib.zb_adamw_step.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int, ctypes.c_size_t, ctypes.c_double, ctypes.c_double, ctypes.c_double,
        ctypes.c_double, ctypes.c_double, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    lib.zb_adamw_isa.restype = ctypes.c_char_p
    lib.zb_adamw_force.restype = ctypes.c_int
    lib.zb_adamw_force.argtypes = [ctypes.c_char_p]
    return lib


def make_deepspeed(torch, param, lr):
    """DeepSpeedCPUAdam for param, or (None, reason)."""
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except Exception as e:  # ImportError, or anything its import raises
        return None, "cannot import deepspeed.ops.adam.DeepSpeedCPUAdam: %s" % (e,)
    try:
        opt = DeepSpeedCPUAdam([param], lr=lr, betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
                               weight_decay=HP["weight_decay"], adamw_mode=True)
    except Exception as e:  # the JIT build of its op failed
        return None, "DeepSpeedCPUAdam unavailable (op build failed?): %s" % (e,)
    return opt, None


def run_config(torch, lib, n, threads, align, rounds, with_ds, with_default, notes):
    keep = []
    p = aligned_f32(torch, n, align, keep)
    g = aligned_f32(torch, n, align, keep)
    m = aligned_f32(torch, n, align, keep)
    v = aligned_f32(torch, n, align, keep)
    gen = torch.Generator().manual_seed(1)
    # Values of a model in training; touched once here so no pass pays first-touch faults.
    p.copy_(torch.rand(n, generator=gen) * 0.1 - 0.05)
    g.copy_(torch.rand(n, generator=gen) * 2e-3 - 1e-3)
    m.copy_(torch.rand(n, generator=gen) * 2e-4 - 1e-4)
    v.copy_(torch.rand(n, generator=gen).square_() * 1e-7)
    param = torch.nn.Parameter(p, requires_grad=True)
    param.grad = g
    assert param.data_ptr() == p.data_ptr()

    torch.set_num_threads(threads)
    impls = [Libzero(lib, (p, g, m, v), threads)]
    kw = dict(lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"],
              weight_decay=HP["weight_decay"])
    if with_ds:
        ds, why = make_deepspeed(torch, param, HP["lr"])
        if ds is None:
            notes.add(why)
        else:
            impls.append(TorchOpt("ds", ds, param, m, v, 0))
    impls.append(TorchOpt("fused", torch.optim.AdamW([param], fused=True, **kw), param, m, v,
                          torch.tensor(0.0)))
    if with_default:
        impls.append(TorchOpt("foreach", torch.optim.AdamW([param], **kw), param, m, v,
                              torch.tensor(0.0)))

    times = {x.name: [] for x in impls}
    for x in impls:  # warm-up: page tables, thread teams, lazy initialisation
        x.step()
    for r in range(rounds):
        order = impls[r % len(impls):] + impls[:r % len(impls)]
        for x in order:
            time.sleep(0.02)  # let the other teams' spinning threads go idle
            t0 = time.perf_counter()
            x.step()
            times[x.name].append(time.perf_counter() - t0)
    finite = bool(torch.isfinite(p).all() and torch.isfinite(m).all() and torch.isfinite(v).all())
    if not finite:
        notes.add("non-finite values after n=%d threads=%d align=%d" % (n, threads, align))
    del keep
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--lib", default=os.path.join(here, "..", "build", "lib",
                                                  "libzero_adam_bench.so"),
                    help="libzero_adam_bench.so (default: build/lib/ of this checkout)")
    ap.add_argument("--sizes", default="16M,64M", help="elements per array (default 16M,64M)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--align", default="0,64",
                    help="bytes past a page boundary, multiples of 4 (default 0,64)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    ap.add_argument("--isa", default=None, help="force libzero's path: avx512, avx2, scalar")
    ap.add_argument("--no-deepspeed", action="store_true", help="leave DeepSpeed out")
    ap.add_argument("--torch-default", action="store_true",
                    help="also time torch.optim.AdamW() (foreach; slow)")
    args = ap.parse_args()

    try:
        import torch
    except ImportError as e:
        print("adam_side_by_side: torch is not importable (%s); nothing to compare" % e)
        return 77
    lib = load_lib(os.path.abspath(args.lib))
    if args.isa and lib.zb_adamw_force(args.isa.encode()) != 0:
        print("adam_side_by_side: path %s unknown or unsupported here" % args.isa)
        return 2
    notes = set()
    with_ds = not args.no_deepspeed
    ds_version = "not used"
    if with_ds:
        try:
            import deepspeed
            ds_version = deepspeed.__version__
            print("# DeepSpeed's cpu_adam op is built (ninja, g++) the first time it is used: "
                  "minutes", flush=True)
        except Exception as e:
            notes.add("DeepSpeed skipped: cannot import deepspeed (%s)" % (e,))
            with_ds = False

    sizes = parse_list(args.sizes, parse_size)
    threads = parse_list(args.threads, int)
    aligns = parse_list(args.align, int)
    if any(a % 4 or a >= PAGE or a < 0 for a in aligns):
        print("adam_side_by_side: --align values must be multiples of 4 below 4096")
        return 2

    print("# adam_side_by_side: torch %s, deepspeed %s, libzero path %s, %d rounds" %
          (torch.__version__, ds_version, lib.zb_adamw_isa().decode(), args.rounds))
    print("# AdamW lr=%g betas=(%g, %g) eps=%g weight_decay=%g, fp32, no working copy" %
          (HP["lr"], HP["beta1"], HP["beta2"], HP["eps"], HP["weight_decay"]))
    rows = []
    for t in threads:
        for n in sizes:
            for a in aligns:
                times = run_config(torch, lib, n, t, a, args.rounds, with_ds,
                                   args.torch_default, notes)
                rows.append((t, n, a, times))
                best = {k: min(v) for k, v in times.items()}
                med = {k: statistics.median(v) for k, v in times.items()}
                print("# threads=%d n=%d align=%d  " % (t, n, a) +
                      "  ".join("%s %.2f/%.2f ms" % (k, best[k] * 1e3, med[k] * 1e3)
                                for k in times) + "  (best/median)", flush=True)
                if with_ds and "ds" not in times:
                    with_ds = False  # it failed once; the reason is in notes
    gomp = openmp_runtimes()
    if len(gomp) > 1:
        notes.add("more than one OpenMP runtime loaded: %s (thread counts may not apply to all)"
                  % ", ".join(gomp))

    others = [k for k in ("ds", "fused", "foreach") if any(k in r[3] for r in rows)]
    print()
    print("Time ratio other / libzero (> 1: libzero faster), best of %d rounds (median in "
          "parentheses); libzero ms and GB/s at 28 bytes per element" % args.rounds)
    print()
    hdr = ["threads", "elements", "align", "libzero ms", "libzero GB/s"] + \
        ["libzero vs %s" % k for k in others]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for t, n, a, times in rows:
        lz_best, lz_med = min(times["libzero"]), statistics.median(times["libzero"])
        cells = [str(t), "%d Mi" % (n >> 20) if n % (1 << 20) == 0 else str(n), str(a),
                 "%.2f" % (lz_best * 1e3), "%.1f" % (28.0 * n / lz_best * 1e-9)]
        for k in others:
            if k in times:
                cells.append("%.2f (%.2f)" % (min(times[k]) / lz_best,
                                              statistics.median(times[k]) / lz_med))
            else:
                cells.append("-")
        print("| " + " | ".join(cells) + " |")
    for note in sorted(notes):
        print("note: " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
