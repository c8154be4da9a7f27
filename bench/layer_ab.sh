#!/bin/sh
# bench/layer_ab.sh DIR MIXER [VAR=V1,V2 | OTHER.so] [ROUNDS]: on a GPU machine, from the repository
# root. Times one mixer layer (the three shapes of bench/mixers_vs_fla_driver: B4 x 2048 fwd+bwd,
# B1 x 8192 and B1 x 32768 forward) in alternating order, so that two variants share one machine
# and its drift:
#   VAR=V1,V2   the plugin DIR/libgraft_MIXER.so under each value of an environment switch
#               (e.g. GRAFT_GLA_FWD_2CTA=0,1)
#   OTHER.so    DIR's plugin against another build of it (e.g. the previous commit's, built with
#               tests/plugins/cuda_standalone.sh into another folder)
# DIR: tests/plugins/cuda_standalone.sh's output (plugins, mixers_vs_fla_driver, cuda_conformance).
# ROUNDS (default 2) of every variant. Before timing, the conformance of DIR's plugin (under each
# value of VAR, if given) against the CPU: tests/plugins/configs/cuda/MIXER.txt. Output: stdout,
# one line per run: variant, then shape: median/min ms.
set -u
[ $# -ge 2 ] || { echo "usage: bench/layer_ab.sh DIR MIXER [VAR=V1,V2 | OTHER.so] [ROUNDS]" >&2; exit 2; }
dir=$1 mixer=$2 ab=${3:-} rounds=${4:-2}
plugin=$dir/libgraft_$mixer.so
[ -f "$plugin" ] && [ -x "$dir/mixers_vs_fla_driver" ] ||
  { echo "layer_ab: $plugin or $dir/mixers_vs_fla_driver missing (build with tests/plugins/cuda_standalone.sh)" >&2; exit 2; }
var= vals=
case $ab in
  *=*,*) var=${ab%%=*}; vals=$(echo "${ab#*=}" | tr ',' ' ') ;;
  '') ;;
  *.so) [ -f "$ab" ] || { echo "layer_ab: $ab: not found" >&2; exit 2; } ;;
  *) echo "layer_ab: $ab: expected VAR=V1,V2 or a plugin .so" >&2; exit 2 ;;
esac
nvidia-smi -L 2>/dev/null || echo "layer_ab: no nvidia-smi here"
rc=0
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
conf() { # $1: label; the rest: an environment prefix (env VAR=V) or nothing
  l=$1; shift
  "$@" "$dir/cuda_conformance" "$plugin" "tests/plugins/configs/cuda/$mixer.txt" > "$log" 2>&1 || rc=1
  echo "conformance$l: $(tail -n 1 "$log")"
}
time_one() { # prints $label, then each shape's median/min ms of the command given (a run without
             # a RESULT line, e.g. a crash, prints its last line and fails the script)
  out=$("$@" 2>&1)
  line=$(echo "$out" | awk '/^RESULT/ {printf "%s:%s %s/%s  ", $3, $5, $6, $7}')
  [ -n "$line" ] || { rc=1; line="FAILED: $(echo "$out" | tail -n 1)"; }
  echo "$label  $line"
}
if [ -n "$var" ]; then
  for v in $vals; do conf " $var=$v" env "$var=$v"; done
else
  conf ""
fi
r=1
while [ $r -le "$rounds" ]; do
  if [ -n "$var" ]; then
    for v in $vals; do label="$var=$v"; time_one env "$var=$v" "$dir/mixers_vs_fla_driver" "$plugin" "$mixer"; done
  else
    label=$plugin; time_one "$dir/mixers_vs_fla_driver" "$plugin" "$mixer"
    [ -n "$ab" ] && { label=$ab; time_one "$dir/mixers_vs_fla_driver" "$ab" "$mixer"; }
  fi
  r=$((r + 1))
done
exit $rc
