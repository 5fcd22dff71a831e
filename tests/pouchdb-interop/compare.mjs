// Compares databases on a server exactly (winners, conflicts, deletions, every leaf's body and
// attachments), after PouchDB itself replicates the first into a new database for reference.
// Usage: node compare.mjs URL DB_A DB_B
import { PouchDB, assert, remote, dump, ok, main } from './common.mjs';

const [base, a, b] = process.argv.slice(2);
await main(async () => {
  const src = remote(`${base}/${a}`);
  const viaPouch = remote(`${base}/${a}-by-pouchdb`);
  await PouchDB.replicate(src, viaPouch);
  const [ds, dh, dp] = [await dump(src), await dump(remote(`${base}/${b}`)), await dump(viaPouch)];
  assert.deepEqual(dh, ds, 'what Hearth replicated differs from the source');
  assert.deepEqual(dh, dp, 'what Hearth replicated differs from what PouchDB produces');
  assert.ok(Object.keys(ds).length >= 63);
  ok(`compare ${a} ${b}`);
});
