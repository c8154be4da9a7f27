#!/bin/sh
# cli_tokenize.sh GRAFT BUILD_DIR SOURCE_DIR: `graft tokenize` end to end: --ids on stdin (spec 10
# vectors), --out shards + manifest from text files and from JSONL (ids checked against --ids),
# and refusals (bad option: exit 2; malformed tokenizer / JSONL: exit 1 with file and field).
set -eu
GRAFT=$1 BUILD=$2 SRC=$3
QWEN=$SRC/../shared/data/qwen3-tokenizer
W=$BUILD/cli-tokenize
rm -rf "$W"; mkdir -p "$W"
fail() { echo "cli_tokenize: FAILED: $*" >&2; exit 1; }

got=$(printf 'Hello world\n12345\n\n<think>x\n' | "$GRAFT" tokenize --tokenizer "$QWEN" --ids)
want=$(printf '9707 1879\n16 17 18 19 20\n\n151667 87\n')
[ "$got" = "$want" ] || fail "--ids gave [$got], expected [$want]"

printf 'Hello world' > "$W/a.txt"
printf '12345\n' > "$W/b.txt"
"$GRAFT" tokenize --tokenizer "$QWEN" --out "$W/shards" --threads 2 "$W/a.txt" "$W/b.txt" 2>"$W/log" ||
    fail "--out: $(cat "$W/log")"
grep -q '"n_tokens": 10' "$W/shards/manifest.json" || fail "manifest: $(cat "$W/shards/manifest.json")"
grep -q '"n_documents": 2' "$W/shards/manifest.json" || fail "manifest documents"
[ -f "$W/shards/shard-00000.tok" ] || fail "no shard"
# 64-byte header + 10 uint32: 9707 1879 EOT 16 17 18 19 20 198 EOT
[ "$(wc -c < "$W/shards/shard-00000.tok")" = 104 ] || fail "shard size"
ids=$(od -An -tu4 -j64 -v "$W/shards/shard-00000.tok" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
[ "$ids" = "9707 1879 151643 16 17 18 19 20 198 151643" ] || fail "shard ids [$ids]"

printf '{"text": "Hello world"}\n{"text": "12345\\n"}\n' > "$W/c.jsonl"
"$GRAFT" tokenize --tokenizer "$QWEN" --jsonl --out "$W/j" --vocab-size 151936 "$W/c.jsonl" 2>/dev/null || fail "--jsonl --out"
cmp -s "$W/j/shard-00000.tok" "$W/shards/shard-00000.tok" && fail "vocab-size not in header"
[ "$(od -An -tu8 -j16 -N8 "$W/j/shard-00000.tok" | tr -d ' ')" = 151936 ] || fail "--vocab-size header"

set +e
"$GRAFT" tokenize --tokenizer "$QWEN" --bogus 2>/dev/null; [ $? = 2 ] || fail "bad option should exit 2"
"$GRAFT" tokenize 2>/dev/null; [ $? = 2 ] || fail "missing --tokenizer should exit 2"
printf '{"txt": 1}\n' > "$W/bad.jsonl"
msg=$("$GRAFT" tokenize --tokenizer "$QWEN" --jsonl --ids "$W/bad.jsonl" 2>&1 >/dev/null); [ $? = 1 ] || fail "bad jsonl exit"
echo "$msg" | grep -q 'bad.jsonl:1: "text"' || fail "bad jsonl message: $msg"
printf '{"model": {"type": "BPE", "vocab": [], "merges": []}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": false, "add_prefix_space": false}}' > "$W/tokenizer.json"
msg=$("$GRAFT" tokenize --tokenizer "$W/tokenizer.json" --ids </dev/null 2>&1); [ $? = 1 ] || fail "bad tokenizer exit"
echo "$msg" | grep -q 'tokenizer.json: model.vocab' || fail "bad tokenizer message: $msg"
printf 'Hello \377\n' > "$W/inv.txt"
msg=$("$GRAFT" tokenize --tokenizer "$QWEN" --ids "$W/inv.txt" 2>&1 >/dev/null); [ $? = 1 ] || fail "invalid utf-8 exit"
echo "$msg" | grep -q 'inv.txt:1: text @ byte 6' || fail "invalid utf-8 message: $msg"
"$GRAFT" tokenize --help | grep -q -- '--out DIR' || fail "--help"
echo "cli_tokenize: ok"
