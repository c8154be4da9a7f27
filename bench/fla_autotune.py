"""bench/fla_autotune.py: trim() narrows every Triton autotune space defined after it to num_warps in
{4, 8} and num_stages in {2, 3}. FLA's full spaces take minutes per kernel on a fresh machine (its
first GLA block step did not finish in 300 s); call it before importing fla, whose kernels are
decorated at import. Used by the FLA benches (mixers_vs_fla, stage0_vs_original, rwkv7_fla_bench,
gla_fla_trim)."""
import triton


def trim():
    full = triton.autotune
    if getattr(full, "graft_trimmed", False):
        return

    def trimmed(configs, *args, **kw):
        keep = [c for c in configs if c.num_warps in (4, 8) and c.num_stages in (2, 3)]
        return full(keep or configs, *args, **kw)
    trimmed.graft_trimmed = True
    triton.autotune = trimmed
