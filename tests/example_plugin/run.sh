#!/bin/sh
# tests/example_plugin/run.sh: builds the out-of-tree example mixer against an INSTALLED graft and
# runs the conformance suite on it. The exit status is the verdict (0 = every step passed).
#
#   run.sh GRAFT_BUILD_DIR GRAFT_SOURCE_DIR GRAFT_CONFORMANCE PYTHON WORK_DIR [CMAKE [CC]]
#
# Steps (each prints "== step" and stops the test on failure, naming what failed):
#  1. cmake --install GRAFT_BUILD_DIR --prefix WORK_DIR/prefix
#  2. copy examples/linear_attention to WORK_DIR/src, so its build cannot reach graft's source tree
#  3. configure and build it in WORK_DIR/build with -DCMAKE_PREFIX_PATH=WORK_DIR/prefix and strict
#     warnings as errors; check that graft was found in the prefix, that every include directory of
#     the compile commands lies in the prefix and none names graft's source or build tree, and that
#     the .so exports only graft_plugin_init and does not link libgraft
#  4. graft_conformance --plugin <the .so> on three cases, and --dump + check_mixer.py on each
#  5. cmake --install the example into the prefix; graft_conformance finds it there by bare name
set -u

BUILD=$1 SRC=$2 CONF=$3 PY=$4 W=$5
CMAKE=${6:-cmake}
CC_ARG=
if [ $# -ge 7 ] && [ -n "$7" ]; then CC_ARG="-DCMAKE_C_COMPILER=$7"; fi
unset DESTDIR

fail() {
    echo "FAIL example_plugin: $*" >&2
    exit 1
}
step() { echo "== $*"; }

rm -rf "$W" || fail "cannot remove $W"
mkdir -p "$W" || fail "cannot create $W"
PREFIX=$W/prefix

step "1. install graft ($BUILD) to $PREFIX"
"$CMAKE" --install "$BUILD" --prefix "$PREFIX" > "$W/install.log" 2>&1 ||
    { cat "$W/install.log" >&2; fail "cmake --install $BUILD"; }
for f in include/graft/plugin.h include/graft/kv.h include/graft/rng.h include/graft/status.h \
         include/graft/tensor.h; do
    [ -f "$PREFIX/$f" ] || fail "the install lacks $f"
done
CFG=$(find "$PREFIX" -name graftConfig.cmake | head -n 1)
[ -n "$CFG" ] || fail "the install lacks graftConfig.cmake"
[ -f "$(dirname "$CFG")/GraftPlugin.cmake" ] ||
    fail "the install lacks GraftPlugin.cmake beside $CFG"

step "2. copy the example out of graft's source tree"
cp -R "$SRC/examples/linear_attention" "$W/src" || fail "cannot copy $SRC/examples/linear_attention"

step "3. configure and build it against $PREFIX"
"$CMAKE" -S "$W/src" -B "$W/build" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF $CC_ARG \
    "-DCMAKE_C_FLAGS=-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror" \
    > "$W/configure.log" 2>&1 || { cat "$W/configure.log" >&2; fail "configure"; }
"$CMAKE" --build "$W/build" > "$W/build.log" 2>&1 || { cat "$W/build.log" >&2; fail "build"; }
FOUND=$(sed -n 's/^graft_DIR:PATH=//p' "$W/build/CMakeCache.txt")
case "$FOUND" in
    "$PREFIX"/*) echo "graft found in $FOUND" ;;
    *) fail "find_package(graft) took \"$FOUND\", expected a directory under $PREFIX" ;;
esac
CC_JSON=$W/build/compile_commands.json
[ -f "$CC_JSON" ] || fail "no $CC_JSON"
# Every -I / -isystem directory must lie in the prefix.
INCS=$(tr ' ' '\n' < "$CC_JSON" | sed -n -e 's/^-I//p' -e '/^-isystem$/{n;p;}' | grep -v '^$')
[ -n "$INCS" ] || fail "the compile commands name no include directory (expected $PREFIX/include)"
for d in $INCS; do
    case "$d" in
        "$PREFIX"/*) echo "include directory $d" ;;
        *) fail "compile commands use include directory $d, outside the prefix $PREFIX" ;;
    esac
done
# Nothing may point into graft's source or build tree (the work dir itself may lie inside them).
if sed "s#$W##g" "$CC_JSON" | grep -e "$SRC" -e "$BUILD" > /dev/null; then
    cat "$CC_JSON" >&2
    fail "compile commands reference graft's source ($SRC) or build ($BUILD) tree"
fi
SO=$(find "$W/build" -name libgraft_linear_attention.so | head -n 1)
[ -n "$SO" ] || fail "the build made no libgraft_linear_attention.so"
echo "built $SO"
if command -v nm > /dev/null; then
    EXPORTS=$(nm -D --defined-only "$SO" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort | tr '\n' ' ')
    [ "$EXPORTS" = "graft_plugin_init " ] ||
        fail "$SO exports \"$EXPORTS\", expected graft_plugin_init alone"
fi
if command -v objdump > /dev/null; then
    if objdump -p "$SO" | grep NEEDED | grep libgraft > /dev/null; then
        fail "$SO links libgraft (plugins link libc and libm only)"
    fi
fi

step "4. conformance suite and float64 reference on $SO"
i=0
while IFS= read -r CASE; do
    case "$CASE" in ''|'#'*) continue ;; esac
    i=$((i + 1))
    echo "-- case $i: $CASE"
    "$CONF" --plugin "$SO" --case "$CASE" > "$W/conformance.$i.log" 2>&1 ||
        { cat "$W/conformance.$i.log" >&2; fail "conformance case $i ($CASE)"; }
    tail -n 1 "$W/conformance.$i.log"
    "$CONF" --plugin "$SO" --case "$CASE" --dump "$W/dump.$i.safetensors" --dump-only \
        > "$W/dump.$i.log" 2>&1 || { cat "$W/dump.$i.log" >&2; fail "dump of case $i ($CASE)"; }
    "$PY" "$SRC/tests/reference/check_mixer.py" "$W/dump.$i.safetensors" ||
        fail "float64 reference check of case $i ($CASE)"
done <<CASES
# tiny: two sequences of 63 tokens (odd T), 4 heads of 8
n_embd=32 n_head=4 n_kv_head=2 head_dim=8 B=2 T=63
# a single token from the empty state
n_embd=32 n_head=4 n_kv_head=2 head_dim=8 B=3 T=1
# an odd width: C = 48 in num_heads = 3 heads of 16 (the setting overrides n_head)
n_embd=48 n_head=4 n_kv_head=2 head_dim=12 num_heads=3 B=2 T=17
CASES
[ $i -eq 3 ] || fail "ran $i cases, expected 3"

step "5. install the example into $PREFIX and load it by name"
"$CMAKE" --install "$W/build" > "$W/install-example.log" 2>&1 ||
    { cat "$W/install-example.log" >&2; fail "cmake --install of the example"; }
PDIR=$(dirname "$(find "$PREFIX" -name libgraft_linear_attention.so | head -n 1)")
[ -f "$PDIR/libgraft_linear_attention.so" ] || fail "the example did not install into $PREFIX"
GRAFT_PLUGIN_VERBOSE=1 GRAFT_PLUGIN_PATH=$PDIR "$CONF" --plugin linear_attention \
    --case "n_embd=16 n_head=2 B=1 T=5" > "$W/by-name.log" 2>&1 ||
    { cat "$W/by-name.log" >&2; fail "loading linear_attention by name from $PDIR"; }
grep -F "$PDIR/libgraft_linear_attention.so: taken" "$W/by-name.log" ||
    { cat "$W/by-name.log" >&2; fail "the by-name run did not take the installed plugin in $PDIR"; }
tail -n 1 "$W/by-name.log"

echo "example_plugin: PASS"
