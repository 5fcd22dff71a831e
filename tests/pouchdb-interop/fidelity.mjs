// Real PouchDB writing random documents to a Hearth hub, and reading the hub's documents back,
// for the byte-for-byte fidelity test (crates/cli/tests/fidelity.rs).
//
// Usage:
//   node fidelity.mjs push URL USER PASSWORD N SEED  -> writes N documents through PouchDB and
//        replicates them to URL; prints each document as PouchDB holds it (JSON.stringify,
//        without _rev), one per line
//   node fidelity.mjs pull URL USER PASSWORD         -> replicates URL into a fresh PouchDB;
//        prints every document the same way
import { PouchDB, assert, mem, remote, main } from './common.mjs';

const [mode, url, user, password, n, seed] = process.argv.slice(2);

// xorshift32: the same documents for the same seed.
let state = (Number(seed) || 1) >>> 0 || 1;
function next() {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state;
}
const below = (k) => next() % k;

// Any finite double, subnormals included, from random bits.
function anyDouble() {
  const view = new DataView(new ArrayBuffer(8));
  for (;;) {
    view.setUint32(0, next());
    view.setUint32(4, next());
    const d = view.getFloat64(0);
    if (Number.isFinite(d)) return d;
  }
}

function number() {
  switch (below(6)) {
    case 0: return anyDouble();
    case 1: return Number.MIN_VALUE * (1 + below(1000)); // subnormal
    case 2: return (next() / 4294967296) * 10 ** (below(40) - 20); // 17 significant digits
    case 3: return below(2) ? Number.MAX_SAFE_INTEGER - below(1000) : -below(1e9);
    case 4: return Math.round(next() / 100) / 1000;
    default: return below(100);
  }
}

const WORDS = ['blood pressure', 'Ünïcödé', '日本語のテキスト', 'emoji 🩺💊', 'tab\there', 'quote " and \\ back',
  'line\nbreak', 'control \u0001\u001f', 'e\u0301 combining', '\u2028 separators \u2029', 'plain', ''];
// Keys a JavaScript object keeps in insertion order (no integer-like names).
const KEYS = ['zeta', 'alpha', 'Mid', 'ключ', 'k-1', 'value', 'valueQuantity', 'note', 'é', 'a b', 'x.y', '$ref', 'z9', 'A'];

function value(depth) {
  const r = below(depth > 8 ? 5 : 8);
  if (r === 0) return number();
  if (r === 1) return WORDS[below(WORDS.length)] + below(100);
  if (r === 2) return below(2) === 0;
  if (r === 3) return null;
  if (r === 4) return number();
  if (r === 5) return Array.from({ length: below(4) }, () => value(depth + 1));
  return object(depth + 1);
}

function object(depth) {
  const o = {};
  const k = below(5) + 1;
  for (let i = 0; i < k; i++) o[KEYS[below(KEYS.length)] + (below(3) ? '' : String.fromCharCode(97 + below(26)))] = value(depth);
  return o;
}

function doc(i) {
  const id = `fid-p-${String(i).padStart(5, '0')}`;
  const d = { _id: `Observation/${id}`, resourceType: 'Observation', id };
  Object.assign(d, object(0));
  if (below(10) === 0) {
    let deep = { leaf: number() };
    for (let j = 0; j < 30; j++) deep = { [KEYS[below(KEYS.length)]]: [deep] };
    d.deep = deep;
  }
  return d;
}

// `_id` first, as CouchDB answers (PouchDB's own copies keep it last).
function line(d) {
  const { _id, _rev, ...rest } = d;
  return JSON.stringify({ _id, ...rest });
}

// Writes every line before main() exits (console.log to a pipe is asynchronous in Node and
// process.exit would cut it short).
function print(rows) {
  const text = rows.map((row) => line(row.doc)).join('\n') + '\n';
  return new Promise((resolve, reject) => process.stdout.write(text, (e) => (e ? reject(e) : resolve())));
}

await main(async () => {
  const hub = remote(url, user, password);
  if (mode === 'push') {
    const local = mem('fidelity');
    const docs = Array.from({ length: Number(n) }, (_, i) => doc(i));
    for (let i = 0; i < docs.length; i += 500) {
      const res = await local.bulkDocs(docs.slice(i, i + 500));
      assert.ok(res.every((r) => r.ok), JSON.stringify(res.find((r) => !r.ok)));
    }
    const pushed = await local.replicate.to(hub, { batch_size: 500 });
    assert.equal(pushed.ok, true);
    assert.equal(pushed.docs_written, docs.length);
    const all = await local.allDocs({ include_docs: true });
    await print(all.rows);
  } else if (mode === 'pull') {
    const local = mem('fidelity-pull');
    const pulled = await local.replicate.from(hub, { batch_size: 500 });
    assert.equal(pulled.ok, true);
    const all = await local.allDocs({ include_docs: true });
    await print(all.rows);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
});
