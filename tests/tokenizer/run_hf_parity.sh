#!/bin/sh
# run_hf_parity.sh GRAFT BUILD_DIR SOURCE_DIR: the HF parity test (ctest tokenizer.hf_parity).
# Installs the npm package `tokenizers` (HF's official Node binding, pinned) into BUILD_DIR/npm,
# rebuilds Qwen3's tokenizer.json from shared/data/qwen3-tokenizer (spec 9; checked byte-identical
# to the published file by SHA-256), then runs hf_parity.js. Without node/npm or the registry the
# test FAILS, unless GRAFT_ALLOW_NO_NPM=1, which turns that case into a ctest skip (exit 77).
set -eu
GRAFT=$1 BUILD=$2 SRC=$3
HERE=$(cd "$(dirname "$0")" && pwd)
QWEN=$SRC/../shared/data/qwen3-tokenizer
HF_VERSION=0.23.2
NPM_DIR=$BUILD/npm
WORK=$BUILD/tokenizer-parity

no_npm() {
    echo "hf_parity: $1" >&2
    if [ "${GRAFT_ALLOW_NO_NPM:-0}" = 1 ]; then echo "hf_parity: skipped (GRAFT_ALLOW_NO_NPM=1)" >&2; exit 77; fi
    echo "hf_parity: FAILED: the HF reference is required (set GRAFT_ALLOW_NO_NPM=1 to skip)" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || no_npm "node not found (apt-get install nodejs npm)"
[ -d "$QWEN" ] || { echo "hf_parity: $QWEN missing" >&2; exit 1; }
if [ ! -f "$NPM_DIR/node_modules/tokenizers/package.json" ] ||
   ! grep -q "\"version\": \"$HF_VERSION\"" "$NPM_DIR/node_modules/tokenizers/package.json"; then
    command -v npm >/dev/null 2>&1 || no_npm "npm not found (apt-get install npm)"
    mkdir -p "$NPM_DIR"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "tokenizers@$HF_VERSION" >&2 ||
        no_npm "npm install tokenizers@$HF_VERSION failed"
fi

mkdir -p "$WORK"
TJ=$WORK/tokenizer.json
node "$HERE/build_tokenizer_json.js" "$QWEN" "$TJ"
SUM=$(sha256sum "$TJ" | cut -d' ' -f1)
if [ "$SUM" != aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4 ]; then
    echo "hf_parity: rebuilt tokenizer.json has SHA-256 $SUM, expected the published Qwen3 file's" >&2
    exit 1
fi
# the demo text (scripts/fetch-demo-data) joins the corpus when present
EXTRA=
[ -d "$SRC/data/demo/kjv" ] && EXTRA="--text-dir $SRC/data/demo/kjv"
NODE_PATH=$NPM_DIR/node_modules exec node "$HERE/hf_parity.js" --graft "$GRAFT" --work "$WORK" \
    --tokenizer "$TJ=$QWEN" --tokenizer "$SRC/data/demo-tokenizer/tokenizer.json" $EXTRA
