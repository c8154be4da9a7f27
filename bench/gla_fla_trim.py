# bench/gla_fla_trim.py: runs bench/gla_fla_bench.py with FLA's Triton autotune spaces trimmed to num_warps in {4, 8} and
# num_stages in {2, 3} (the full spaces take minutes per kernel on a fresh machine).
import sys, runpy, triton
_orig = triton.autotune
def autotune(configs, *a, **kw):
    keep = [c for c in configs if c.num_warps in (4, 8) and c.num_stages in (2, 3)]
    return _orig(keep or configs, *a, **kw)
triton.autotune = autotune
sys.argv = ["gla_fla_bench.py"] + sys.argv[1:]
runpy.run_path(sys.argv[0] if False else __file__.replace("gla_fla_trim.py", "gla_fla_bench.py"), run_name="__main__")
