#!/usr/bin/env python3
"""bench/decode_roofline.py: single-sequence decode speed of graft on CUDA against the memory-bandwidth
roofline and against HF transformers, all measured in one invocation on one GPU (issue #8).

  roofline   a decode step at batch 1 must read every weight once: bytes/token = 2 (bf16) x (the
             28 layers' projection and MLP weights + the lm_head) + the KV cache at that context.
             The copy bandwidth is measured here (torch device-to-device copy of 2 GiB, read +
             write bytes / time), so roofline tokens/s = bandwidth / bytes per token.
  graft      `graft bench --device cuda` on a random model from the config (the control, all
             softmax), fixed generation length, CUDA graphs on; again with GRAFT_CUDA_GRAPHS=0, and
             with GRAFT_CUDA_SKINNY=0 (every product through cuBLASLt instead of cuda/skinny.cu), and
             with GRAFT_CUDA_PDL=0 (the decode products launched without programmatic dependent launch).
  HF         transformers (bf16, sdpa, random weights from the same config built on the GPU,
             model.generate greedy with min_new_tokens = max_new_tokens, static cache off), the
             same context and number of new tokens; decode tokens/s = (new - 1) / (total - TTFT).

Usage (GPU machine): python3 bench/decode_roofline.py --graft BIN/graft --config bench/configs/qwen3-1.7b.json
        [--contexts 512,4096] [--gen 128] [--out results.md]
"""
import argparse, json, os, re, subprocess, sys, time


def graft_decode(graft, config, contexts, gen, graphs, skinny=True, pdl=True, setenv=None):
    env = dict(os.environ)
    if setenv:
        env.update(setenv)
    if not graphs:
        env["GRAFT_CUDA_GRAPHS"] = "0"
    if not skinny:
        env["GRAFT_CUDA_SKINNY"] = "0"
    if not pdl:
        env["GRAFT_CUDA_PDL"] = "0"
    cmd = [graft, "bench", "--device", "cuda", "--config", config, "--contexts", ",".join(map(str, contexts)),
           "--batch", "1", "--gen-tokens", str(gen), "--repeat", "3"]
    print("+", " ".join(cmd), "(graphs off)" if not graphs else "", "(cuBLASLt products)" if not skinny else "",
          "(PDL off)" if not pdl else "", " ".join(f"({k}={v})" for k, v in (setenv or {}).items()), flush=True)
    t0 = time.time()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    print(out, f"[graft bench: {time.time() - t0:.1f} s wall]", flush=True)
    res = {}
    for line in out.splitlines():
        f = line.split()
        # graft bench's table: model context batch chunk ttft_ms decode_tok/s state_MiB peak_MiB
        if len(f) == 8 and f[0] == "control" and re.fullmatch(r"\d+", f[1]):
            res[int(f[1])] = {"ttft_ms": float(f[4]), "tok_s": float(f[5]), "peak_mib": float(f[7])}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--graft", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--contexts", default="512,4096")
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--hf-gen", type=int, default=48, help="HF new tokens per run (HF decodes ~30 tok/s)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--sweep", default="",
                    help="VAR=V1,V2,...: an A/B of a run-time switch (docs/cuda.md lists them): graft (graphs "
                         "on) once per value, the list run twice in alternating order, a table of each (same run)")
    ap.add_argument("--sweep-only", action="store_true", help="with --sweep: skip the other graft variants and HF")
    a = ap.parse_args()
    contexts = [int(x) for x in a.contexts.split(",")]
    cfg = json.load(open(a.config))

    import torch
    dev = torch.device("cuda")
    n = 1 << 30  # 1 Gi bf16 elements = 2 GiB
    x = torch.empty(n, dtype=torch.bfloat16, device=dev)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        y.copy_(x)
    e1.record()
    torch.cuda.synchronize()
    bw = 2 * 2 * n * 10 / (e0.elapsed_time(e1) * 1e-3)  # read + write bytes per second
    del x, y
    torch.cuda.empty_cache()

    C, I, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim", C // nq)
    weights = 2 * (L * (C * nq * D + 2 * C * nkv * D + nq * D * C + 3 * C * I) + V * C)

    def bytes_per_token(ctx):
        return weights + 2 * L * 2 * nkv * D * ctx  # + the K and V cache read at that context

    sweep_lines = []
    if a.sweep:
        if "=" not in a.sweep:
            sys.exit(f"decode_roofline: --sweep {a.sweep!r}: expected VAR=V1,V2,...")
        var, vals = a.sweep.split("=", 1)
        vals = vals.split(",")
        runs = {v: [] for v in vals}
        for order in (vals, vals[::-1]):
            for v in order:
                runs[v].append(graft_decode(a.graft, a.config, contexts, a.gen, True, setenv={var: v}))
        sweep_lines = ["", f"Sweep of {var} (two runs per value, alternating order; "
                       "tok/s and % of the roofline):", "",
                       f"| {var} | " + " | ".join(f"{c} tok/s | {c} %roof" for c in contexts) + " |",
                       "|---|" + "---|---|" * len(contexts)]
        for v in vals:
            cells = []
            for c in contexts:
                ts = [r.get(c, {}).get("tok_s", float("nan")) for r in runs[v]]
                roof = bw / bytes_per_token(c)
                cells.append(", ".join(f"{t:.1f}" for t in ts))
                cells.append(", ".join(f"{100 * t / roof:.1f}%" for t in ts))
            sweep_lines.append(f"| {v} | " + " | ".join(cells) + " |")
        print("\n".join(sweep_lines), flush=True)
        if a.sweep_only:
            if a.out:
                open(a.out, "w").write("\n".join(sweep_lines) + "\n")
            return 0

    g_on = graft_decode(a.graft, a.config, contexts, a.gen, True)
    g_off = graft_decode(a.graft, a.config, contexts, a.gen, False)
    g_lt = graft_decode(a.graft, a.config, contexts, a.gen, True, skinny=False)
    g_np = graft_decode(a.graft, a.config, contexts, a.gen, True, pdl=False)

    hf = {}
    if not a.no_hf:
        t_hf = time.time()
        from transformers import AutoConfig, AutoModelForCausalLM
        hc = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
        torch.manual_seed(0)
        with torch.device(dev):
            model = AutoModelForCausalLM.from_config(hc, torch_dtype=torch.bfloat16, attn_implementation="sdpa").eval()
        print(f"[HF model built: {time.time() - t_hf:.1f} s]", flush=True)
        for ctx in contexts:
            ids = torch.randint(0, V, (1, ctx), device=dev)
            tt, tot = [], []
            for r in range(2):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.no_grad():
                    model(ids, use_cache=True, logits_to_keep=1).logits[:, -1].float().cpu()
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                with torch.no_grad():
                    model.generate(ids, max_new_tokens=a.hf_gen, min_new_tokens=a.hf_gen, do_sample=False,
                                   pad_token_id=0)
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                tt.append(t1 - t0)
                tot.append(t2 - t1)
            ttft, total = min(tt), min(tot)
            hf[ctx] = {"tok_s": (a.hf_gen - 1) / max(total - ttft, 1e-9)}
            print(f"HF ctx {ctx}: generate {a.hf_gen} tokens in {total * 1e3:.1f} ms, ttft {ttft * 1e3:.1f} ms, "
                  f"decode {hf[ctx]['tok_s']:.1f} tok/s", flush=True)
        del model
        torch.cuda.empty_cache()

    name = torch.cuda.get_device_name(0)
    lines = [f"# Decode at batch 1 vs the memory-bandwidth roofline ({time.strftime('%Y-%m-%d')})", "",
             f"Device: {name}; copy bandwidth measured in this run: {bw / 1e9:.0f} GB/s (read + write, 2 GiB "
             f"bf16 copy). Model: {a.config} (random bf16 weights); graft: {a.gen} new tokens per run, median "
             f"of 3; HF: {a.hf_gen} new tokens, best of 2 (model.generate, greedy).",
             f"Weight bytes read per token: {weights / 1e9:.3f} GB (bf16 projections, MLPs, lm_head).", "",
             "| context | roofline tok/s | graft tok/s | % of roofline | graft, no graphs | graft, cuBLASLt "
             "products | graft, PDL off | HF tok/s | graft/HF |", "|---|---|---|---|---|---|---|---|---|"]
    for ctx in contexts:
        roof = bw / bytes_per_token(ctx)
        on, off, h = g_on.get(ctx, {}), g_off.get(ctx, {}), hf.get(ctx, {})
        t_on, t_off, t_h = on.get("tok_s", float("nan")), off.get("tok_s", float("nan")), h.get("tok_s", float("nan"))
        t_lt = g_lt.get(ctx, {}).get("tok_s", float("nan"))
        t_np = g_np.get(ctx, {}).get("tok_s", float("nan"))
        lines.append(f"| {ctx} | {roof:.0f} | {t_on:.1f} | {100 * t_on / roof:.1f}% | {t_off:.1f} | {t_lt:.1f} | "
                     f"{t_np:.1f} | {t_h:.1f} | {t_on / t_h:.2f}x |")
    rep = "\n".join(lines + sweep_lines) + "\n"
    print(rep)
    if a.out:
        open(a.out, "w").write(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
