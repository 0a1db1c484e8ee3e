// Times ONNX models against an original in onnxruntime-web's wasm backend (from node), for
// `cargo run --example bench -- --latency`.
//
//     node ort_web_latency.mjs --inputs FILE [--runs 30] [--warmup 5] ORIGINAL VARIANT [VARIANT ...]
//
// Same arguments and JSON output as ort_latency.py (no --threads: one wasm thread, no proxy
// worker; the CPU times are the node process's, all threads). onnxruntime-web is loaded and
// models opened, external data included, by tests/runtimes/ort_web.mjs (onnxruntime-web from
// $ORT_WEB_DIR/node_modules, by default tests/runtimes after `npm ci` there).

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { loadOrt, openSession } from '../../tests/runtimes/ort_web.mjs';

const ort = await loadOrt('ort_web_latency.mjs');

const args = process.argv.slice(2);
const opt = { runs: 30, warmup: 5 };
const models = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--inputs') opt.inputs = args[++i];
  else if (args[i] === '--runs') opt.runs = Number(args[++i]);
  else if (args[i] === '--warmup') opt.warmup = Number(args[++i]);
  else models.push(args[i]);
}
if (!opt.inputs || models.length < 2) {
  console.error('usage: ort_web_latency.mjs --inputs FILE [--runs N] [--warmup N] ORIGINAL VARIANT [VARIANT ...]');
  process.exit(2);
}

const run = JSON.parse(readFileSync(opt.inputs, 'utf8')).runs[0];
const feeds = {};
for (const i of run.inputs) {
  const data = i.dtype === 'int64' ? BigInt64Array.from(i.values, (v) => BigInt(v)) : Int32Array.from(i.values);
  feeds[i.name] = new ort.Tensor(i.dtype, data, i.shape);
}

const open = (path) => openSession(ort, path);
// Wall-clock and process CPU ms (user + system, all of node's threads) of one run.
async function timed(session, f) {
  const t = performance.now();
  const c = process.cpuUsage();
  await session.run(f);
  const used = process.cpuUsage(c);
  return [performance.now() - t, (used.user + used.system) / 1000];
}

const base = await open(models[0]);
const pairs = [];
for (const path of models.slice(1)) {
  try {
    const v = await open(path);
    const vfeeds = Object.fromEntries(v.inputNames.map((n) => [n, feeds[n]]));
    for (let k = 0; k < opt.warmup; k++) {
      await timed(base, feeds);
      await timed(v, vfeeds);
    }
    const original = [];
    const variant = [];
    for (let k = 0; k < opt.runs; k++) {
      original.push(await timed(base, feeds));
      variant.push(await timed(v, vfeeds));
    }
    pairs.push({
      model: path,
      original_ms: original.map((x) => x[0]),
      variant_ms: variant.map((x) => x[0]),
      original_cpu_ms: original.map((x) => x[1]),
      variant_cpu_ms: variant.map((x) => x[1]),
    });
    await v.release();
  } catch (e) {
    const message = String(e && e.message ? e.message : e).split('\n')[0];
    pairs.push({ model: path, error: message });
    console.error(`ort_web_latency.mjs: ${path}: ${message}`);
  }
}
await base.release();
process.stdout.write(JSON.stringify({ runtime: `onnxruntime-web ${ort.env.versions.web} (wasm)`, pairs }));
