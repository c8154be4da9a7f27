#!/usr/bin/env node
// train_bpe.js OUT.json MERGES FILES...: trains a small byte-level BPE (GPT-2 / Qwen style) on text
// files and writes an HF tokenizer.json with Qwen3's normalizer, pre-tokenizer, decoder and added
// tokens layout (shared/spec/tokenizer.md 2.1), loadable by graft and by HF tokenizers.
// Deterministic: the most frequent pair wins, ties go to the smallest "a b" key (code unit order).
// Pre-tokenization for counting uses a JS regex close to the Qwen2 pattern; counts only steer
// which merges exist, encoding itself always uses the exact pre-tokenizer.
'use strict';
const fs = require('fs');
const [out, nMergesArg, ...files] = process.argv.slice(2);
if (!out || !nMergesArg || !files.length) { console.error('usage: train_bpe.js OUT.json MERGES FILES...'); process.exit(2); }
const nMerges = Number(nMergesArg);

const b2u = [];
{ let k = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    b2u[b] = String.fromCodePoint(printable ? b : 0x100 + k++);
  } }
const vocabOrder = [];          // Qwen's byte token order: printable bytes, then the others
for (let b = 0; b < 256; b++) if (b2u[b].codePointAt(0) === b) vocabOrder.push(b2u[b]);
for (let b = 0; b < 256; b++) if (b2u[b].codePointAt(0) !== b) vocabOrder.push(b2u[b]);

const re = /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
const counts = new Map();
for (const f of files) {
  const text = fs.readFileSync(f, 'utf8').normalize('NFC');
  for (const m of text.matchAll(re)) counts.set(m[0], (counts.get(m[0]) || 0) + 1);
}
const words = [];
for (const [piece, c] of [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
  const bytes = Buffer.from(piece, 'utf8');
  words.push({ syms: Array.from(bytes, (b) => b2u[b]), c });
}
const pairCount = new Map(), pairWords = new Map();
const key = (a, b) => a + ' ' + b;
function addPairs(wi, sign) {
  const s = words[wi].syms;
  for (let i = 0; i + 1 < s.length; i++) {
    const k = key(s[i], s[i + 1]);
    pairCount.set(k, (pairCount.get(k) || 0) + sign * words[wi].c);
    if (sign > 0) { let set = pairWords.get(k); if (!set) pairWords.set(k, (set = new Set())); set.add(wi); }
  }
}
words.forEach((_, i) => addPairs(i, 1));
const merges = [], vocab = new Map(vocabOrder.map((t, i) => [t, i]));
while (merges.length < nMerges) {
  let best = null, bc = 0;
  for (const [k, c] of pairCount) if (c > bc || (c === bc && c > 0 && k < best)) { best = k; bc = c; }
  if (!best || bc < 2) break;
  const [a, b] = best.split(' ');
  const ab = a + b;
  merges.push([a, b]);
  if (!vocab.has(ab)) vocab.set(ab, vocab.size);
  for (const wi of pairWords.get(best)) {
    const s = words[wi].syms;
    let has = false;
    for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { has = true; break; }
    if (!has) continue;
    addPairs(wi, -1);
    const ns = [];
    for (let i = 0; i < s.length; i++) {
      if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { ns.push(ab); i++; } else ns.push(s[i]);
    }
    words[wi].syms = ns;
    addPairs(wi, 1);
  }
  pairCount.delete(best);
}
const n = vocab.size;
const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
const added = specials.map((content, i) => ({ id: n + i, content, single_word: false, lstrip: false, rstrip: false,
                                              normalized: false, special: true }));
const pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
const vocabText = '{\n' + [...vocab.entries()].map(([k, v]) => `      ${JSON.stringify(k)}: ${v}`).join(',\n') + '\n    }';
const tj = {
  version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: { type: 'NFC' },
  pre_tokenizer: { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false }, bl] },
  post_processor: bl, decoder: bl,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
           fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: '@@VOCAB@@', merges },
};
fs.writeFileSync(out, JSON.stringify(tj, null, 2).replace('"@@VOCAB@@"', () => vocabText));
console.error(`train_bpe: ${merges.length} merges, ${n} BPE tokens + ${added.length} added -> ${out}`);
