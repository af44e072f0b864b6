"""PyTorch baseline for one Qwen3-30B-A3B MoE layer (H 2048, I 768, E 128, k 8) on the local GPU.

Two implementations, in float32 and bfloat16:
  hf_loop     the Hugging Face transformers eager expert loop (softmax top-k, renormalise, one matmul pair per hit
              expert, index_add_ back), as in Qwen3MoeSparseMoeBlock;
  grouped_mm  tokens sorted by expert, torch._grouped_mm for gate_up and down, weighted scatter back.
Kernel time per forward with CUDA events (each iteration bracketed separately), median of `--iters` after warm-up.
float32 matmuls run without TF32 (torch's default), like our float32 path. Writes JSON to stdout (or --out).
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

H, I, E, K = 2048, 768, 128, 8


def make_layer(dtype, gen):
    dev = 'cuda'
    gate = (torch.rand(E, H, generator=gen, device=dev) * 2 - 1) * math.sqrt(3.0 / H)
    gate_up = (torch.rand(E, 2 * I, H, generator=gen, device=dev) * 2 - 1) * math.sqrt(3.0 / H)
    down = (torch.rand(E, H, I, generator=gen, device=dev) * 2 - 1) * math.sqrt(3.0 / I)
    return gate.to(dtype), gate_up.to(dtype), down.to(dtype)


def route(x, gate):
    logits = x @ gate.t()
    probs = F.softmax(logits, dim=-1, dtype=torch.float)
    w, ids = torch.topk(probs, K, dim=-1)
    w = w / w.sum(dim=-1, keepdim=True)
    return w.to(x.dtype), ids


def hf_loop(x, gate, gate_up, down):
    w, ids = route(x, gate)
    out = torch.zeros_like(x)
    mask = F.one_hot(ids, num_classes=E).permute(2, 1, 0)
    hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit:
        e = e[0]
        slot, tok = torch.where(mask[e])
        cur = x[tok]
        g, u = (cur @ gate_up[e].t()).chunk(2, dim=-1)
        y = (F.silu(g) * u) @ down[e].t()
        out.index_add_(0, tok, y * w[tok, slot, None])
    return out


def grouped_mm(x, gate, gate_up, down):
    w, ids = route(x, gate)
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tok = order // K
    counts = torch.bincount(flat, minlength=E)
    offs = torch.cumsum(counts, 0).to(torch.int32)
    xs = x[tok]
    gu = torch._grouped_mm(xs, gate_up.transpose(-2, -1), offs=offs)
    g, u = gu.chunk(2, dim=-1)
    y = torch._grouped_mm(F.silu(g) * u, down.transpose(-2, -1), offs=offs)
    y = y * w.reshape(-1)[order, None]
    return torch.zeros_like(x).index_add_(0, tok, y)


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tokens', default='1,16,256,4096')
    ap.add_argument('--dtypes', default='float32,bfloat16')
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--iters', type=int, default=30)
    ap.add_argument('--out', default='')
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator(device='cuda').manual_seed(0)
    res = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'H': H, 'I': I, 'E': E, 'k': K,
           'allow_tf32': torch.backends.cuda.matmul.allow_tf32, 'results': []}
    for dname in a.dtypes.split(','):
        dtype = getattr(torch, dname)
        gate, gate_up, down = make_layer(dtype, gen)
        for T in [int(t) for t in a.tokens.split(',')]:
            x = torch.randn(T, H, generator=gen, device='cuda').to(dtype)
            ref = None
            for name, fn in (('hf_loop', hf_loop), ('grouped_mm', grouped_mm)):
                row = {'impl': name, 'dtype': dname, 'T': T}
                try:
                    with torch.no_grad():
                        out = fn(x, gate, gate_up, down)
                        if ref is None:
                            ref = out.float()
                        else:
                            row['max_rel_diff_vs_hf_loop'] = ((out.float() - ref).abs().max() / ref.abs().max()).item()
                        med, times = time_ms(lambda: fn(x, gate, gate_up, down), a.warmup, a.iters)
                    row['median_ms'] = med
                    row['min_ms'] = min(times)
                except Exception as e:  # e.g. a dtype torch._grouped_mm does not support on this GPU
                    row['error'] = f'{type(e).__name__}: {e}'.split('\n')[0][:300]
                res['results'].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        del gate, gate_up, down
        torch.cuda.empty_cache()
    text = json.dumps(res, indent=1)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(text)
    print(text)


if __name__ == '__main__':
    main()
