// Runs ONNX models in onnxruntime-web's wasm backend, from node, for tests/it/runtimes.rs.
//
//     node ort_web_run.mjs MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]
//
// Same arguments and JSON exchange format as ort_run.py (see there). onnxruntime-web is
// imported from the node_modules of the folder $ORT_WEB_DIR names, by default this file's
// folder (`npm ci` there installs the pinned version). One thread, no proxy
// worker, no network: the wasm binary is read from the package. External data is what a
// browser app must do: every file the model's tensors name as `location` is read from the
// model's folder and handed over in the `externalData` session option.
// Exit 1 with one line per failed model on stderr.

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const packageDir = resolve(process.env.ORT_WEB_DIR || dirname(fileURLToPath(import.meta.url)));
let ort;
try {
  // the package's entry for node (its "exports": node, require)
  const entry = createRequire(join(packageDir, 'package.json')).resolve('onnxruntime-web');
  const module = await import(pathToFileURL(entry).href);
  ort = module.InferenceSession ? module : module.default;
} catch (e) {
  console.error(`ort_web_run.mjs: cannot load onnxruntime-web from ${packageDir}/node_modules (run \`npm ci\` there): ${e.message.split("\n")[0]}`);
  process.exit(2);
}
const version = ort.env.versions.web;

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.logLevel = 'error';

// --- the external-data locations a model names (a minimal protobuf walk) -------------------

function varint(buf, pos) {
  let value = 0;
  let shift = 1;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated protobuf');
    const b = buf[pos++];
    value += (b & 0x7f) * shift;
    if (b < 0x80) return [value, pos];
    shift *= 128;
  }
}

// Calls visit(field, bytes) for each length-delimited field of the message in buf.
function fields(buf, visit) {
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0: [, pos] = varint(buf, pos); break;
      case 1: pos += 8; break;
      case 5: pos += 4; break;
      case 2: {
        let len;
        [len, pos] = varint(buf, pos);
        if (pos + len > buf.length) throw new Error('truncated protobuf');
        visit(field, buf.subarray(pos, pos + len));
        pos += len;
        break;
      }
      default: throw new Error(`unsupported protobuf wire type ${key & 7}`);
    }
  }
}

const text = (b) => new TextDecoder().decode(b);

function tensorLocations(tensor, out) {
  fields(tensor, (f, b) => {
    if (f !== 13) return; // TensorProto.external_data
    let key = '';
    let value = '';
    fields(b, (g, c) => { if (g === 1) key = text(c); else if (g === 2) value = text(c); });
    if (key === 'location') out.add(value);
  });
}

function graphLocations(graph, out) {
  fields(graph, (f, b) => {
    if (f === 5) tensorLocations(b, out); // initializer
    else if (f === 15) fields(b, (g, c) => { if (g === 1 || g === 2) tensorLocations(c, out); }); // sparse_initializer
    else if (f === 1) nodeLocations(b, out); // node
  });
}

function nodeLocations(node, out) {
  fields(node, (f, b) => {
    if (f !== 5) return; // NodeProto.attribute
    fields(b, (g, c) => {
      if (g === 5 || g === 10) tensorLocations(c, out); // t, tensors
      else if (g === 6 || g === 11) graphLocations(c, out); // g, graphs
    });
  });
}

function externalLocations(model) {
  const out = new Set();
  fields(model, (f, b) => {
    if (f === 7) graphLocations(b, out); // ModelProto.graph
    else if (f === 25) fields(b, (g, c) => { if (g === 7) nodeLocations(c, out); }); // functions
  });
  return [...out];
}

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
  const bytes = readFileSync(model);
  let locations = [];
  try {
    locations = externalLocations(bytes);
  } catch {
    // not a protobuf we can walk: onnxruntime-web says why below
  }
  const externalData = locations.map((path) => ({ path, data: readFileSync(join(dirname(model), path)) }));
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    externalData,
  });
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
