// Runs ONNX models in onnxruntime-web's wasm backend, from node, for tests/it/runtimes.rs.
//
//     node ort_web_run.mjs MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]
//
// Same arguments and JSON exchange format as ort_run.py (see there). onnxruntime-web is loaded
// and models opened (external data included) by ort_web.mjs: one wasm thread, no proxy worker.
// Exit 1 with one line per failed model on stderr.

import { readFileSync, writeFileSync } from 'node:fs';

import { loadOrt, openSession } from './ort_web.mjs';

const ort = await loadOrt('ort_web_run.mjs');
const version = ort.env.versions.web;

// --- the exchange format ------------------------------------------------------------------

function decodeNumber(v) {
  if (typeof v !== 'string') return v;
  return { nan: NaN, inf: Infinity, '-inf': -Infinity }[v];
}

function encodeFloat(v) {
  if (Number.isNaN(v)) return 'nan';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  return v; // a JS number is an f64: every f32 and f16 is exact, and printed shortest
}

function halfToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

function makeTensor(input) {
  const values = input.values.map(decodeNumber);
  let data;
  switch (input.dtype) {
    case 'int64': data = BigInt64Array.from(values, (v) => BigInt(v)); break;
    case 'int32': data = Int32Array.from(values); break;
    case 'bool': data = Uint8Array.from(values, (v) => (v ? 1 : 0)); break;
    case 'float32': data = Float32Array.from(values); break;
    case 'float64': data = Float64Array.from(values); break;
    default: throw new Error(`input '${input.name}' of type ${input.dtype}, which this runner cannot feed`);
  }
  return new ort.Tensor(input.dtype, data, input.shape);
}

function tensorValues(name, t) {
  switch (t.type) {
    case 'float32':
    case 'float64': return Array.from(t.data, encodeFloat);
    case 'float16': return Array.from(t.data, (h) => encodeFloat(halfToNumber(h)));
    case 'int32': return Array.from(t.data);
    case 'int64': return Array.from(t.data, (v) => (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()));
    case 'bool': return Array.from(t.data, (v) => v !== 0);
    default: throw new Error(`output '${name}' of type ${t.type}, which the exchange format does not carry`);
  }
}

async function runModel(model, inputsPath, outputsPath) {
  const runs = JSON.parse(readFileSync(inputsPath, 'utf8')).runs;
  const session = await openSession(ort, model);
  try {
    const results = [];
    for (const run of runs) {
      const feeds = {};
      for (const input of run.inputs) feeds[input.name] = makeTensor(input);
      const got = await session.run(feeds);
      const outputs = session.outputNames.map((name) => {
        const t = got[name];
        return { name, dtype: t.type, shape: Array.from(t.dims), values: tensorValues(name, t) };
      });
      results.push({ outputs });
    }
    writeFileSync(outputsPath, JSON.stringify({ runtime: `onnxruntime-web ${version} (wasm)`, runs: results }));
  } finally {
    await session.release();
  }
}

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 3 !== 0) {
  console.error('usage: ort_web_run.mjs MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]');
  process.exit(2);
}
let failures = 0;
for (let i = 0; i < args.length; i += 3) {
  try {
    await runModel(args[i], args[i + 1], args[i + 2]);
  } catch (e) {
    failures += 1;
    const message = String(e && e.message ? e.message : e).split('\n')[0];
    console.error(`ort_web_run.mjs: ${args[i]}: ${message}`);
  }
}
process.exit(failures ? 1 : 0);
