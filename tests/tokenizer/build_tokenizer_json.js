#!/usr/bin/env node
// build_tokenizer_json.js DIR OUT: rebuilds Qwen3's tokenizer.json from DIR/vocab.json +
// DIR/merges.txt + DIR/tokenizer_config.json (added_tokens_decoder), with the layout of
// shared/spec/tokenizer.md section 9 (byte-identical to the published Qwen3 tokenizer.json).
'use strict';
const fs = require('fs');
const path = require('path');
const [dir, out] = process.argv.slice(2);
if (!dir || !out) { console.error('usage: build_tokenizer_json.js DIR OUT'); process.exit(2); }

const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8'));
const merges = [];
const lines = fs.readFileSync(path.join(dir, 'merges.txt'), 'utf8').split('\n');
lines.forEach((l, i) => {
  if (l.startsWith('#version') || (l === '' && i === lines.length - 1)) return;
  const parts = l.split(' ');
  if (parts.length !== 2) throw new Error(`merges.txt:${i + 1}: bad merge line`);
  merges.push(parts);
});
const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
const added = Object.entries(cfg.added_tokens_decoder || {})
  .map(([id, t]) => ({ id: Number(id), content: t.content, single_word: t.single_word, lstrip: t.lstrip,
                       rstrip: t.rstrip, normalized: t.normalized, special: t.special }))
  .sort((a, b) => a.id - b.id);
// JS objects put integer-like keys ("10") first, so the vocab is written by hand in id order.
const vocabText = '{\n' + Object.entries(vocab).sort((a, b) => a[1] - b[1])
  .map(([k, v]) => `      ${JSON.stringify(k)}: ${v}`).join(',\n') + '\n    }';
const pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
const tj = {
  version: '1.0', truncation: null, padding: null, added_tokens: added,
  normalizer: { type: 'NFC' },
  pre_tokenizer: { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
  post_processor: bl, decoder: bl,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
           fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: '@@VOCAB@@', merges: merges },
};
fs.writeFileSync(out, JSON.stringify(tj, null, 2).replace('"@@VOCAB@@"', () => vocabText));
