// The PouchDB side of `hearth-sync-bench`: PouchDB (in-memory adapter, its fastest) replicating
// with express-pouchdb (in-memory, in its own process) on the same generated documents as the
// Hearth run. Prints one JSON line of timings in milliseconds.
// Usage: node bench.mjs N
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { mem, remote, main } from './common.mjs';

const n = Number(process.argv[2] || 10000);

function doc(i, rev) {
  return {
    _id: `Observation/obs-${String(i).padStart(8, '0')}`,
    resourceType: 'Observation',
    id: `obs-${String(i).padStart(8, '0')}`,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: `Patient/p-${String(i % 5000).padStart(6, '0')}` },
    effectiveDateTime: '2026-11-20T09:30:00Z',
    valueQuantity: { value: 60 + (i % 40) + (rev ? 1 : 0), unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
    note: [{ text: 'x'.repeat(560) }],
  };
}

function peakKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/);
  return m ? Number(m[1]) : null;
}

async function timed(f) {
  const t = process.hrtime.bigint();
  const r = await f();
  return [Number(process.hrtime.bigint() - t) / 1e6, r];
}

await main(async () => {
  const server = spawn('node', ['pouchdb-server.mjs', '--empty'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await new Promise((resolve) => {
    createInterface({ input: server.stdout }).on('line', (l) => {
      const m = l.match(/http:\/\/\S+/);
      if (m) resolve(m[0]);
    });
  });
  const a = mem('a');
  for (let i = 0; i < n; i += 1000) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) docs.push(doc(j));
    await a.bulkDocs(docs);
  }
  const target = remote(`${url}/bench`);
  const [push] = await timed(() => a.replicate.to(target));
  const b = mem('b');
  const [pull] = await timed(() => b.replicate.from(target));
  const [noop] = await timed(() => b.replicate.from(target));
  const changed = [];
  for (let i = 0; i < n; i += 100) {
    const cur = await a.get(doc(i)._id);
    changed.push({ ...doc(i, true), _rev: cur._rev });
  }
  await a.bulkDocs(changed);
  const [push1] = await timed(() => a.replicate.to(target));
  const [pull1, r] = await timed(() => b.replicate.from(target));
  if (r.docs_written !== changed.length) throw new Error(`pulled ${r.docs_written} of ${changed.length} changed`);
  const out = { docs: n, push_ms: push, pull_ms: pull, noop_ms: noop, push_1pct_ms: push1, pull_1pct_ms: pull1, server_peak_rss_kb: peakKb(server.pid) };
  console.log(JSON.stringify(out));
  server.kill();
});
