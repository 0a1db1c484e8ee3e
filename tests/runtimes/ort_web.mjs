// What tests/runtimes/ort_web_run.mjs and examples/bench/ort_web_latency.mjs share: loading
// onnxruntime-web for node (one wasm thread, no proxy worker, no network: the wasm binary is
// read from the package) and opening a model with its external data, as a browser app must:
// every file the model's tensors name as `location` is read from the model's folder and
// handed over in the `externalData` session option.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// onnxruntime-web from the node_modules of the folder $ORT_WEB_DIR names, by default this
// file's folder (`npm ci` there installs the pinned version). `who` names the script in the
// error; exits 2 when the package cannot be loaded.
export async function loadOrt(who) {
  const packageDir = resolve(process.env.ORT_WEB_DIR || dirname(fileURLToPath(import.meta.url)));
  let ort;
  try {
    // the package's entry for node (its "exports": node, require)
    const entry = createRequire(join(packageDir, 'package.json')).resolve('onnxruntime-web');
    const module = await import(pathToFileURL(entry).href);
    ort = module.InferenceSession ? module : module.default;
  } catch (e) {
    console.error(`${who}: cannot load onnxruntime-web from ${packageDir}/node_modules (run \`npm ci\` there): ${e.message.split('\n')[0]}`);
    process.exit(2);
  }
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
  return ort;
}

// A session of the model at `path` in the wasm backend, with its external data.
export async function openSession(ort, path) {
  const bytes = readFileSync(path);
  let locations = [];
  try {
    locations = externalLocations(bytes);
  } catch {
    // not a protobuf we can walk: onnxruntime-web says why when it reads it
  }
  const externalData = locations.map((location) => ({ path: location, data: readFileSync(join(dirname(path), location)) }));
  return ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], externalData });
}

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

export function externalLocations(model) {
  const out = new Set();
  fields(model, (f, b) => {
    if (f === 7) graphLocations(b, out); // ModelProto.graph
    else if (f === 25) fields(b, (g, c) => { if (g === 7) nodeLocations(c, out); }); // functions
  });
  return [...out];
}
