# bench/gla_fla_trim.py: runs bench/gla_fla_bench.py with FLA's Triton autotune spaces trimmed to num_warps in {4, 8} and
# num_stages in {2, 3} (the full spaces take minutes per kernel on a fresh machine).
import runpy
import sys

import fla_autotune

fla_autotune.trim()
sys.argv = ["gla_fla_bench.py"] + sys.argv[1:]
runpy.run_path(__file__.replace("gla_fla_trim.py", "gla_fla_bench.py"), run_name="__main__")
