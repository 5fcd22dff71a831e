// Shared helpers for the interop scripts: PouchDB with the in-memory adapter, assertions that
// exit non-zero with a message, and a canonical dump of a database (every document's leaves,
// winner and conflicts) so two databases can be compared exactly.
import PouchDB from 'pouchdb';
import memory from 'pouchdb-adapter-memory';
import find from 'pouchdb-find';
import assert from 'node:assert/strict';

PouchDB.plugin(memory);
PouchDB.plugin(find);

export { PouchDB, assert };

export function mem(name) {
  return new PouchDB(`${name}-${Math.random().toString(36).slice(2)}`, { adapter: 'memory' });
}

export function remote(url, user, password) {
  const opts = user ? { auth: { username: user, password } } : {};
  return new PouchDB(url, opts);
}

// Every document: winner, conflicts, deleted flag, and every leaf revision's body.
export async function dump(db) {
  const out = {};
  const changes = await db.changes({ style: 'all_docs', include_docs: false });
  for (const c of changes.results) {
    const leaves = await db.get(c.id, { open_revs: 'all', revs: true, attachments: true });
    const bodies = leaves
      .filter((l) => l.ok)
      .map((l) => {
        const d = { ...l.ok };
        if (d._attachments) {
          for (const a of Object.values(d._attachments)) {
            delete a.revpos;
            delete a.length;
            delete a.stub;
          }
        }
        return d;
      })
      .sort((a, b) => (a._rev < b._rev ? -1 : 1));
    let winner = null;
    let conflicts = [];
    try {
      const w = await db.get(c.id, { conflicts: true });
      winner = w._rev;
      conflicts = (w._conflicts || []).sort();
    } catch (e) {
      if (e.status !== 404) throw e;
      // Every leaf is deleted: the winner is the highest generation, then the highest hash
      // (the changes feed's order of leaves is not the winner first on every server).
      const gen = (r) => Number(r.split('-')[0]);
      winner = bodies
        .map((l) => l._rev)
        .reduce((a, b) => (gen(a) !== gen(b) ? (gen(a) > gen(b) ? a : b) : a > b ? a : b), c.changes[0].rev);
    }
    out[c.id] = { winner, conflicts, deleted: !!c.deleted, leaves: bodies };
  }
  return out;
}

export function ok(name) {
  console.log(`ok ${name}`);
}

export async function main(fn) {
  try {
    await fn();
    process.exit(0);
  } catch (e) {
    console.error(`FAILED: ${e.stack || e} ${JSON.stringify(e)}`);
    process.exit(1);
  }
}
