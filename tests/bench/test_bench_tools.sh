#!/bin/sh
# tests/bench/test_bench_tools.sh PYTHON SRC WORKDIR: bench/trace_summary.py and bench/layer_ab.sh
# without a GPU. Exit 0 when every check holds; each failure prints what was expected.
set -u
py=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work" || exit 1
fail=0
check() { # description, then a command that must succeed
  d=$1; shift
  if "$@"; then echo "ok   $d"; else echo "FAIL $d"; fail=1; fi
}

# --- trace_summary: three kernels on one stream, the second overlapping the first (as under PDL):
# a 0-10, b 5-20, a 22-30 (microseconds). Durations: a 18, b 15 (sum 33 > span 30); marginal
# (end minus the previous end): a 10 + 10 = 20, b 10, summing to the span; one 2 us gap.
cat > "$work/t.csv" <<'CSV'
start_ns,end_ns,kind,name
0,10000,K,ka
5000,20000,K,kb
22000,30000,K,ka
CSV
"$py" "$src/bench/trace_summary.py" "$work/t.csv" --marginal > "$work/ts.txt" 2>&1
check "trace_summary runs" test $? -eq 0
check "span 30 us, busy 28 us, one gap" grep -q "span 0.030 ms, busy 0.028 ms, idle 0.002 ms (6.7%) in 1 gaps" "$work/ts.txt"
check "durations: ka 18 us in 2, kb 15 us" sh -c "grep -A3 '^gaps over' '$work/ts.txt' | grep -q '0.018 ms .* x    2 .*ka' &&
  grep -A3 '^gaps over' '$work/ts.txt' | grep -q '0.015 ms .* x    1 .*kb'"
check "marginal: ka 20 us (66.7%), kb 10 us (33.3%)" sh -c "sed -n '/^marginal/,\$p' '$work/ts.txt' | grep -q '0.020 ms  66.7% x    2 .*ka' &&
  sed -n '/^marginal/,\$p' '$work/ts.txt' | grep -q '0.010 ms  33.3% x    1 .*kb'"
"$py" "$src/bench/trace_summary.py" "$work/t.csv" > "$work/ts0.txt" 2>&1
check "no marginal section without --marginal" sh -c "! grep -q '^marginal' '$work/ts0.txt'"

# --- layer_ab.sh: refusals (exit 2, a message naming what is wrong), then two variants
ab() { sh "$src/bench/layer_ab.sh" "$@" > "$work/ab.out" 2> "$work/ab.err"; }
ab; check "no arguments: usage, exit 2" sh -c "test $? -eq 2 && grep -q usage '$work/ab.err'"
ab "$work/none" gla; check "missing DIR: exit 2, names the plugin" sh -c "test $? -eq 2 && grep -q 'none/libgraft_gla.so' '$work/ab.err'"
fake=$work/fake && mkdir -p "$fake" && : > "$fake/libgraft_gla.so"
cat > "$fake/mixers_vs_fla_driver" <<'SH'
#!/bin/sh
[ "${GRAFT_X:-}" = 7 ] && { echo "driver: out of memory" >&2; exit 1; }
echo "RESULT $2 fwd B=1 T=8192 ${GRAFT_X:-1.5} 1.25"
SH
cat > "$fake/cuda_conformance" <<'SH'
#!/bin/sh
[ "${GRAFT_X:-}" = 9 ] && { echo "FAIL gla: 1 case(s), 1 failure(s)"; exit 1; }
echo "OK gla: 1 case(s), 0 failure(s)"
SH
chmod +x "$fake/mixers_vs_fla_driver" "$fake/cuda_conformance"
mkdir -p "$work/tests/plugins/configs/cuda"
ab "$fake" gla bogus; check "a variant that is neither VAR=V1,V2 nor .so: exit 2" sh -c "test $? -eq 2 && grep -q 'bogus: expected' '$work/ab.err'"
ab "$fake" gla "$work/nothere.so"; check "a missing OTHER.so: exit 2" sh -c "test $? -eq 2 && grep -q 'nothere.so: not found' '$work/ab.err'"
ab "$fake" gla GRAFT_X=2,3 2
check "switch A/B: exit 0, each value conformed and timed twice, alternating" sh -c "test $? -eq 0 &&
  grep -q 'conformance GRAFT_X=2: OK' '$work/ab.out' && grep -q 'conformance GRAFT_X=3: OK' '$work/ab.out' &&
  test \$(grep -c '^GRAFT_X=' '$work/ab.out') -eq 4 &&
  grep '^GRAFT_X=' '$work/ab.out' | tr '\n' ' ' | grep -q 'GRAFT_X=2  fwd:T=8192 2/1.25 .*GRAFT_X=3  fwd:T=8192 3/1.25 .*GRAFT_X=2 .*GRAFT_X=3'"
ab "$fake" gla GRAFT_X=9,2 1; check "a failing conformance: exit 1, still timed" sh -c "test $? -eq 1 && grep -q 'conformance GRAFT_X=9: FAIL' '$work/ab.out' && test \$(grep -c '^GRAFT_X=' '$work/ab.out') -eq 2"
ab "$fake" gla GRAFT_X=2,7 1; check "a driver that fails: exit 1, its last line shown" sh -c "test $? -eq 1 && grep -q 'GRAFT_X=7  FAILED: driver: out of memory' '$work/ab.out' && grep -q 'GRAFT_X=2  fwd:T=8192 2/1.25' '$work/ab.out'"
ab "$fake" gla "$fake/libgraft_gla.so" 1; check "plugin A/B: both builds timed" sh -c "test $? -eq 0 && test \$(grep -c 'fwd:T=8192' '$work/ab.out') -eq 2"
# --- kernel_ncu.sh: refusals, then a run against a stand-in ncu (what it writes and prints)
kn() { sh "$src/bench/kernel_ncu.sh" "$@" > "$work/kn.out" 2> "$work/kn.err"; }
kn; check "kernel_ncu: no arguments: usage, exit 2" sh -c "test $? -eq 2 && grep -q usage '$work/kn.err'"
kn "$work/none" gla fwd:8192 k_fwd2 "$work/kno"; check "kernel_ncu: missing DIR: exit 2, names the plugin" sh -c "test $? -eq 2 && grep -q 'none/libgraft_gla.so' '$work/kn.err'"
mkdir -p "$work/nobin"
PATH="$work/nobin:/usr/bin:/bin" kn "$fake" gla fwd:8192 k_fwd2 "$work/kno"
check "kernel_ncu: no ncu on PATH: exit 2, says so" sh -c "test $? -eq 2 && grep -q 'ncu not found' '$work/kn.err'"
mkdir -p "$work/ncubin"
cat > "$work/ncubin/ncu" <<'SH'
#!/bin/sh
# stand-in for Nsight Compute: -o REP writes REP.ncu-rep; --import prints details or a source CSV
case " $* " in
  *" --import "*) case " $* " in *" --page source "*) echo '"Line","Source","Warp Stall Sampling"'; echo '"12","acc += g","431"' ;;
                  *) echo "    Duration                     us      465.10"; echo "    No Eligible                   %       61.2" ;; esac; exit 0 ;;
esac
[ "${FAKE_NCU_FAIL:-}" = 1 ] && { echo "==ERROR== profiling failed"; exit 1; }
while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2.ncu-rep"; shift; done
echo "==PROF== done"
SH
chmod +x "$work/ncubin/ncu"
PATH="$work/ncubin:$PATH" kn "$fake" gla fwd:8192 "k_fwd2<float" "$work/kno"
check "kernel_ncu: a run writes the report, its details and the source CSV, prints the summary" sh -c "test $? -eq 0 &&
  test -f '$work/kno/ncu_k_fwd2_float.ncu-rep' && grep -q 'No Eligible' '$work/kno/ncu_k_fwd2_float.txt' &&
  grep -q 'acc += g' '$work/kno/ncu_k_fwd2_float_src.csv' && grep -q 'Duration' '$work/kn.out'"
FAKE_NCU_FAIL=1 PATH="$work/ncubin:$PATH" kn "$fake" gla fwd:8192 k_fwd2 "$work/kno"
check "kernel_ncu: ncu failing: exit 1, its last lines shown" sh -c "test $? -eq 1 && grep -q 'profiling failed' '$work/kn.err'"
exit $fail
