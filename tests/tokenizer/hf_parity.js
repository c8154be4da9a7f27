#!/usr/bin/env node
// hf_parity.js --graft G --work DIR (--tokenizer TOKENIZER_JSON[=GRAFT_PATH])... [--text-dir DIR]...
// Encodes a few MB of varied text with Hugging Face `tokenizers` (npm, the official Node binding:
// the same Rust code and Oniguruma as the Python package) and with `graft tokenize --ids --jsonl`
// and requires zero mismatches, for each tokenizer: HF loads TOKENIZER_JSON, graft loads it and,
// if given, GRAFT_PATH too (e.g. the vocab.json + merges.txt directory of the same tokenizer).
// Also checks decode parity (`graft tokenize --decode`, with and without skip_special) on a sample.
// Text stays within Unicode 14 (spec 5.5): generated strings use explicit code point lists.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

let graft, work;
const toks = [], extraDirs = [];
for (let i = 2; i < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]];
  if (k === '--graft') graft = v;
  else if (k === '--work') work = v;
  else if (k === '--tokenizer') { const [j, g] = v.split('='); toks.push({ json: j, alt: g }); }
  else if (k === '--text-dir') extraDirs.push(v);
  else { console.error(`hf_parity: unknown argument ${k}`); process.exit(2); }
}
fs.mkdirSync(work, { recursive: true });

// ---- deterministic PRNG (splitmix-ish on 32 bits is enough here) ----
let seed = 0x9e3779b9;
function rnd() { seed = (seed + 0x6d2b79f5) | 0; let t = seed; t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];

const docs = [];
// ---- 1. spec section 10 vectors and hand-picked cases ----
docs.push('Hello world', ' Hello world', 'Hello  world  ', "I'm HERE'S don't", '12345', 'a\r\n\r\nb', '\n\n\n',
  'x   y', '  \n  x', '<|im_start|>user\nHi<|im_end|>\n', '<think>\n\n</think>\n\n', '你好，世界', '🙂 ok', 'e\u0301',
  'cafe\u0301', '\u00a0\u00a0x', 'tab\there', '<|im_end|>\u0338', '', 'a <think> b', "it\u017Fs 'ſ 'S 'LL 'Ve",
  'a\u180e\'S \u180e', '\u11935\u11930', '\u{11935}\u{11930}', '\u{11938}', '<|endoftext|><|endoftext|>',
  '<|im_start', '<<|im_end|>>', ' '.repeat(300), '='.repeat(200) + '\n', '\t'.repeat(70) + 'x', '\r\n'.repeat(50),
  '1'.repeat(100), 'a'.repeat(500), '한국어 \u1100\u1161\u11a8 각', 'Ⅻ ¹²³ ١٢٣ ０１２', '\u3000\u3000テスト\u3000');

// ---- 2. real files: English prose, C, Python, and any extra text dirs (demo data) ----
function listFiles(dir, re, max, acc = []) {
  let ents;
  try { ents = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1)); }
  catch (e) { return acc; }
  for (const e of ents) {
    if (acc.length >= max) break;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) listFiles(p, re, max, acc);
    else if (e.isFile() && re.test(e.name)) acc.push(p);
  }
  return acc;
}
function addFileDocs(files, budget) {
  let used = 0;
  for (const f of files) {
    if (used >= budget) break;
    let s;
    try { s = fs.readFileSync(f, 'utf8'); } catch (e) { continue; }
    s = s.slice(0, Math.min(s.length, budget - used, 200000));
    // cut into documents of random length (1 .. 8k code units), never inside a surrogate pair
    for (let i = 0; i < s.length;) {
      let j = Math.min(s.length, i + 1 + ri(8192));
      if (j < s.length && s.charCodeAt(j) >= 0xdc00 && s.charCodeAt(j) <= 0xdfff) j++;
      docs.push(s.slice(i, j));
      i = j;
    }
    used += s.length;
  }
}
addFileDocs(listFiles('/usr/share/common-licenses', /./, 40), 400000);
for (const d of extraDirs) addFileDocs(listFiles(d, /\.txt$/, 50), 1200000);
addFileDocs(listFiles('/usr/include', /\.h$/, 400).filter((_, i) => i % 3 === 0), 600000);
addFileDocs(listFiles('/usr/lib/python3.11', /\.py$/, 600).filter((_, i) => i % 5 === 0), 600000);

// ---- 3. random mixed-script strings ----
const pieces = [' ', '  ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2028', '\u0085', '\u180e', '\u200b',
  '\u2009', '\u202f', '\f', '\v', 'the', 'The', 'HELLO', 'x', 'é', 'e\u0301', 'A\u030a', '\u0338', '>', '=',
  "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'LL", "'d", "'", '\u2019s', 'ſ', '0', '7', '42', '3.14', '1,000',
  '¹', '½', 'Ⅻ', '٣', '९', '０', '中文', '日本語', 'ひらがな', 'カタカナ', '한국어', '\u1100\u1161', 'Привет',
  'Ελληνικά', 'العربية', 'עברית', 'हिन्दी', 'ไทย', 'ქართული', '🙂', '👍🏽', '👨‍👩‍👧', '🇩🇪', '❤️', '(', ')',
  '{', '}', '[', ']', '"', '...', '—', '–', '•', '…', '!?', ';', '::', '->', '#', '//', '/*', '*/', '\\', '$',
  '€', '£', '¥', '©', '®', '™', '\u0000', '\u0001', '\u007f', '\u00ad', '\ufeff', '\ufffd', '<|im_start|>',
  '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>', '<|fim_prefix|>', '<|vision_pad|>',
  '<|im_', '|>', '<', 'ǅ', 'ß', 'ﬁ', 'Å', 'Ω', 'K', '\u{11935}\u{11930}', '\u{1F600}', '\u{20000}', '\u{2F800}',
  '𝔘𝔫𝔦', '\u0300', '\u0327', '\u0345', 'ḁ̀', 'ǖ', '\u0f73', '\u0958'];
for (let k = 0; k < 12000; k++) {
  const n = 1 + ri(24);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(pieces);
  docs.push(s);
}

// ---- encode with HF ----
async function hfEncodeAll(tok, texts) {
  const out = [];
  for (let i = 0; i < texts.length; i += 512) {
    const encs = await tok.encodeBatch(texts.slice(i, i + 512), { addSpecialTokens: false });
    for (const e of encs) out.push(Array.from(e.getIds()));
  }
  return out;
}

function graftIds(tokPath, jsonl) {
  const r = spawnSync(graft, ['tokenize', '--tokenizer', tokPath, '--ids', '--jsonl', '--threads', '2', jsonl],
    { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (r.status !== 0) { console.error(`graft failed (${r.status}): ${r.stderr}`); process.exit(1); }
  const lines = r.stdout.split('\n');
  lines.pop();
  return lines.map((l) => (l === '' ? [] : l.split(' ').map(Number)));
}

function compare(label, hf, gr) {
  let bad = 0, tokens = 0;
  if (hf.length !== gr.length) { console.error(`${label}: ${gr.length} output lines, expected ${hf.length}`); return 1; }
  for (let i = 0; i < hf.length; i++) {
    tokens += hf[i].length;
    const a = hf[i], b = gr[i];
    let j = 0;
    while (j < a.length && j < b.length && a[j] === b[j]) j++;
    if (j === a.length && j === b.length) continue;
    if (++bad <= 5) {
      console.error(`${label}: MISMATCH doc ${i} at id ${j}: text ${JSON.stringify(docs[i].slice(0, 300))}`);
      console.error(`  hf    ${JSON.stringify(a.slice(Math.max(0, j - 3), j + 8))}`);
      console.error(`  graft ${JSON.stringify(b.slice(Math.max(0, j - 3), j + 8))}`);
    }
  }
  const chars = docs.reduce((s, d) => s + d.length, 0);
  console.log(`${label}: ${docs.length} documents, ${chars} UTF-16 code units, ${tokens} tokens, ${bad} mismatches`);
  return bad;
}

async function decodeParity(label, tok, tokPath, hf) {
  let bad = 0;
  const sample = hf.filter((_, i) => i % 7 === 0);
  const idsFile = path.join(work, 'ids.txt');
  fs.writeFileSync(idsFile, sample.map((a) => a.join(' ')).join('\n') + '\n');
  for (const skip of [false, true]) {
    const args = ['tokenize', '--tokenizer', tokPath, '--decode', idsFile];
    if (skip) args.push('--skip-special');
    const r = spawnSync(graft, args, { maxBuffer: 1 << 30, encoding: 'utf8' });
    if (r.status !== 0) { console.error(`graft --decode failed: ${r.stderr}`); process.exit(1); }
    const got = r.stdout.split('\n');
    got.pop();
    let dbad = 0;
    for (let i = 0; i < sample.length; i++) {
      const want = await tok.decode(sample[i], skip);
      if (got[i] === undefined || JSON.parse(got[i]) !== want) {
        if (++dbad <= 3)
          console.error(`${label}: decode MISMATCH (skip_special ${skip}) sample ${i}: want ${JSON.stringify(want.slice(0, 200))} got ${(got[i] || '').slice(0, 200)}`);
      }
    }
    console.log(`${label}: decode (skip_special ${skip}): ${sample.length} id lists, ${dbad} mismatches`);
    bad += dbad;
  }
  return bad;
}

(async () => {
  const jsonl = path.join(work, 'corpus.jsonl');
  fs.writeFileSync(jsonl, docs.map((d) => JSON.stringify({ text: d })).join('\n') + '\n');
  let bad = 0;
  for (const t of toks) {
    const tok = Tokenizer.fromFile(t.json);
    const name = path.basename(path.dirname(t.json));
    const t0 = Date.now();
    const hf = await hfEncodeAll(tok, docs);
    const t1 = Date.now();
    bad += compare(`${name}: graft (tokenizer.json) vs HF`, hf, graftIds(t.json, jsonl));
    const t2 = Date.now();
    if (t.alt) bad += compare(`${name}: graft (${t.alt}) vs HF`, hf, graftIds(t.alt, jsonl));
    bad += await decodeParity(name, tok, t.json, hf);
    console.log(`${name}: HF encode ${t1 - t0} ms, graft encode ${t2 - t1} ms (incl. load and process start)`);
  }
  if (!toks.length) { console.error('hf_parity: no --tokenizer given'); bad = 1; }
  process.exit(bad ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
