#!/usr/bin/env node
// bench/tokenizer/bench.js [--record] [--text-dir DIR]... [--code] [--tokenizer TOKENIZER.json]
// (--text-dir: every .txt file of DIR; default data/demo/kjv. --code: adds C headers from
// /usr/include and Python modules from /usr/lib/python3.*, about 4 MB.)
// graft's tokenizer against Hugging Face `tokenizers` (npm, official binding, same Rust code as the
// Python package) on the same documents in one run: 1 thread and all threads, tokens/s for each,
// and the ratio. Load time is excluded on both sides; each figure is the best of 3 runs.
// Needs: a graft build in build/ (or $GRAFT_BUILD), node, and the npm package (installed into
// $GRAFT_BUILD/npm by the parity test or here). --record writes bench/results/tokenizer-DATE.md.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync, execSync } = require('child_process');

const root = path.resolve(__dirname, '../..');
const build = process.env.GRAFT_BUILD || path.join(root, 'build');
const npmDir = path.join(build, 'npm');
let record = false, tokJson = null, code = false;
const textDirs = [];
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--record') record = true;
  else if (a === '--text-dir') textDirs.push(process.argv[++i]);
  else if (a === '--tokenizer') tokJson = process.argv[++i];
  else if (a === '--code') code = true;
  else if (a === '--hf-worker') break;
  else { console.error(`bench: unknown argument ${a}`); process.exit(2); }
}

// ---- HF worker mode: node bench.js --hf-worker TOKENIZER DOCS.jsonl (threads set by env) ----
if (process.argv[2] === '--hf-worker') {
  const { Tokenizer } = require(path.join(npmDir, 'node_modules', 'tokenizers'));
  const tok = Tokenizer.fromFile(process.argv[3]);
  const docs = fs.readFileSync(process.argv[4], 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l).text);
  (async () => {
    let best = 1e30, tokens = 0;
    for (let rep = 0; rep < 3; rep++) {
      const t0 = process.hrtime.bigint();
      const encs = await tok.encodeBatch(docs, { addSpecialTokens: false });
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      best = Math.min(best, dt);
      tokens = encs.reduce((s, e) => s + e.getIds().length, 0);
    }
    console.log(`hf ${process.env.RAYON_NUM_THREADS} ${tokens} ${best.toFixed(6)}`);
  })();
  return;
}

const work = path.join(build, 'bench-tokenizer');
fs.mkdirSync(work, { recursive: true });
if (!fs.existsSync(path.join(npmDir, 'node_modules', 'tokenizers')))
  execSync(`npm install --prefix ${npmDir} --no-audit --no-fund --loglevel=error tokenizers@0.23.2`, { stdio: 'inherit' });
if (!tokJson) {
  tokJson = path.join(build, 'tokenizer-parity', 'tokenizer.json');
  if (!fs.existsSync(tokJson)) {
    fs.mkdirSync(path.dirname(tokJson), { recursive: true });
    execSync(`node ${path.join(root, 'tests/tokenizer/build_tokenizer_json.js')} ${path.join(root, '../shared/data/qwen3-tokenizer')} ${tokJson}`);
  }
}
if (!textDirs.length && !code) textDirs.push(path.join(root, 'data/demo/kjv'));

// documents: paragraphs grouped to about 4 KiB, from every .txt file of the text dirs
const docs = [];
for (const d of textDirs) {
  for (const f of fs.readdirSync(d).filter((x) => x.endsWith('.txt')).sort()) {
    const paras = fs.readFileSync(path.join(d, f), 'utf8').split(/(?<=\n\n)/);
    let cur = '';
    for (const p of paras) { cur += p; if (cur.length >= 4096) { docs.push(cur); cur = ''; } }
    if (cur) docs.push(cur);
  }
}
if (code) {
  const pyDir = fs.readdirSync('/usr/lib').filter((x) => /^python3\.\d+$/.test(x)).sort().pop();
  const srcs = [['/usr/include', /\.h$/], [pyDir ? `/usr/lib/${pyDir}` : '/nonexistent', /\.py$/]];
  for (const [d, re] of srcs) {
    let budget = 3e6;
    let files = [];
    try { files = fs.readdirSync(d).filter((x) => re.test(x)).sort(); } catch (e) { continue; }
    for (const f of files) {
      if (budget <= 0) break;
      const t = fs.readFileSync(path.join(d, f), 'utf8');
      for (let i = 0; i < t.length;) {          // 4 KiB documents, never splitting a surrogate pair
        let j = Math.min(t.length, i + 4096);
        if (j < t.length && t.charCodeAt(j) >= 0xdc00 && t.charCodeAt(j) <= 0xdfff) j++;
        docs.push(t.slice(i, j));
        i = j;
      }
      budget -= t.length;
    }
  }
  textDirs.push('/usr/include/*.h + python stdlib *.py');
}
if (!docs.length) { console.error(`bench: no .txt files in ${textDirs.join(', ')} (run scripts/fetch-demo-data)`); process.exit(1); }
const docsFile = path.join(work, 'docs.jsonl');
fs.writeFileSync(docsFile, docs.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
const bytes = docs.reduce((s, t) => s + Buffer.byteLength(t), 0);

// build the C driver against the graft build
const exe = path.join(work, 'bench_tokenizer');
execSync(`cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I${root}/core/include -I${root}/core/src ` +
         `${__dirname}/bench_tokenizer.c -o ${exe} -L${build}/lib -lgraft -Wl,-rpath,${build}/lib`);
const nThreads = os.cpus().length;
const parse = (out) => out.trim().split('\n').map((l) => { const [who, th, tok, s] = l.split(' ');
  return { who, threads: Number(th), tokens: Number(tok), s: Number(s) }; });
const rows = [];
for (const th of [1, nThreads]) {
  const env = { ...process.env, RAYON_NUM_THREADS: String(th), TOKENIZERS_PARALLELISM: th > 1 ? 'true' : 'false' };
  const r = spawnSync('node', [__filename, '--hf-worker', tokJson, docsFile], { env, encoding: 'utf8' });
  if (r.status !== 0) { console.error(r.stderr); process.exit(1); }
  rows.push(...parse(r.stdout).map((x) => ({ ...x, threads: th })));
}
const g = spawnSync(exe, [tokJson, docsFile, '1', String(nThreads)], { encoding: 'utf8' });
if (g.status !== 0) { console.error(g.stderr); process.exit(1); }
rows.push(...parse(g.stdout));

let table = `| threads | HF tokenizers 0.23.2 (tokens/s) | graft (tokens/s) | graft / HF |\n|---|---|---|---|\n`;
let ok = true;
for (const th of [1, nThreads]) {
  const h = rows.find((x) => x.who === 'hf' && x.threads === th), m = rows.find((x) => x.who === 'graft' && x.threads === th);
  if (h.tokens !== m.tokens) { console.error(`bench: token counts differ: HF ${h.tokens}, graft ${m.tokens}`); ok = false; }
  const hr = h.tokens / h.s, gr = m.tokens / m.s;
  table += `| ${th} | ${(hr / 1e6).toFixed(2)} M | ${(gr / 1e6).toFixed(2)} M | ${(gr / hr).toFixed(2)}x |\n`;
  if (gr < hr) ok = false;
}
const cpu = (os.cpus()[0] || {}).model || 'unknown CPU';
let commit = 'unknown';
try { commit = execSync('git rev-parse --short HEAD', { cwd: root, encoding: 'utf8' }).trim(); } catch (e) { /* no git */ }
const head = `Text: ${docs.length} documents (${(bytes / 1e6).toFixed(2)} MB, ${rows[0].tokens} tokens) from ${textDirs.map((d) => path.relative(root, d) || d).join(', ')}\n` +
  `Tokenizer: ${path.relative(root, tokJson)} (HF's timing includes building its Encoding objects: ids, tokens, offsets)\nMachine: ${cpu}, ${nThreads} logical CPUs, ${os.platform()} ${os.release()}; node ${process.version}\n` +
  `graft commit ${commit}; best of 3 runs each, load time excluded.\n`;
console.log(head);
console.log(table);
if (record) {
  const date = new Date().toISOString().slice(0, 10);
  const out = path.join(root, 'bench/results', `tokenizer-${date}.md`);
  const section = head.split('\n').filter((l) => l).map((l) => `- ${l}`).join('\n') + '\n\n' + table;
  if (fs.existsSync(out)) fs.appendFileSync(out, '\n' + section);
  else fs.writeFileSync(out, `# Tokenizer: graft vs HF tokenizers (${date})\n\nProduced by ` +
    '`node bench/tokenizer/bench.js --record [--code]`; the results file gathers every run of the day.\n\n' + section);
  console.log(`wrote ${out}`);
}
process.exit(ok ? 0 : 1);
