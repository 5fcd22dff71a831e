// Real PouchDB (npm `pouchdb`, in-memory adapter) replicating with a running Hearth hub.
// Usage: node hub.mjs http://127.0.0.1:PORT USER PASSWORD
import { PouchDB, assert, mem, remote, dump, ok, main } from './common.mjs';

const [base, user, password] = process.argv.slice(2);
const run = Math.random().toString(36).slice(2, 8);
const url = (db) => `${base}/${db}-${run}`;

async function seed(db, n, prefix) {
  const docs = [];
  for (let i = 0; i < n; i++) docs.push({ _id: `${prefix}${String(i).padStart(4, '0')}`, resourceType: 'Observation', value: i });
  await db.bulkDocs(docs);
}

await main(async () => {
  // Push: documents, an attachment, a deletion.
  const a = mem('a');
  await seed(a, 120, 'obs-');
  await a.put({ _id: 'consent-1', resourceType: 'Consent', _attachments: { 'sig.png': { content_type: 'image/png', data: Buffer.from([137, 80, 78, 71]).toString('base64') } } });
  const del = await a.put({ _id: 'gone', v: 1 });
  await a.remove('gone', del.rev);
  const hubDb = remote(url('interop'), user, password);
  const pushed = await a.replicate.to(hubDb);
  assert.equal(pushed.ok, true);
  assert.equal(pushed.docs_written, 122);
  const info = await hubDb.info();
  assert.equal(info.doc_count, 121);
  assert.equal(info.doc_del_count, 1);
  ok('push');

  // Pull into a fresh PouchDB: the same documents, revisions and attachment bytes.
  const b = mem('b');
  const pulled = await b.replicate.from(hubDb);
  assert.equal(pulled.docs_written, 122);
  assert.deepEqual(await dump(b), await dump(a));
  const att = await b.getAttachment('consent-1', 'sig.png');
  assert.deepEqual([...att], [137, 80, 78, 71]);
  ok('pull');

  // Conflicting edits on both sides: the same winner and _conflicts everywhere.
  const base1 = await a.get('obs-0001');
  await a.put({ ...base1, value: 'edited on a' });
  const base2 = await b.get('obs-0001');
  await b.put({ ...base2, value: 'edited on b', extra: true });
  await a.sync(hubDb);
  await b.sync(hubDb);
  await a.sync(hubDb);
  const [da, db_, dh] = [await dump(a), await dump(b), await dump(hubDb)];
  assert.deepEqual(da, db_);
  assert.deepEqual(da, dh);
  assert.equal(da['obs-0001'].conflicts.length, 1);
  ok('conflicts');

  // Deletion on one side reaches the other.
  const d = await b.get('obs-0002');
  await b.remove(d);
  await b.sync(hubDb);
  await a.sync(hubDb);
  await assert.rejects(a.get('obs-0002'), (e) => e.status === 404 && e.reason === 'deleted');
  ok('deletions');

  // Live sync: a write on the hub side arrives without another call.
  const live = a.sync(hubDb, { live: true, retry: true });
  const arrived = new Promise((resolve) => {
    live.on('change', (info) => {
      if (info.direction === 'pull' && info.change.docs.some((x) => x._id === 'live-1')) resolve();
    });
  });
  await new Promise((r) => setTimeout(r, 300));
  await b.put({ _id: 'live-1', v: 'from b' });
  await b.replicate.to(hubDb);
  await Promise.race([arrived, new Promise((_, rej) => setTimeout(() => rej(new Error('live change did not arrive in 15 s')), 15000))]);
  live.cancel();
  ok('live');

  // Interrupted and resumed: the second run starts from the checkpoint.
  const big = mem('big');
  await seed(big, 400, 'r-');
  const target = remote(url('resume'), user, password);
  await new Promise((resolve) => {
    const rep = big.replicate.to(target, { batch_size: 20 });
    rep.on('change', (info) => { if (info.docs_written >= 100) rep.cancel(); });
    rep.on('complete', resolve);
  });
  const partial = (await target.info()).doc_count;
  assert.ok(partial >= 100 && partial < 400, `partial push wrote ${partial}`);
  const resumed = await big.replicate.to(target, { batch_size: 20 });
  assert.ok(resumed.docs_read <= 400 - 100, `resumed run re-read ${resumed.docs_read}`);
  assert.equal((await target.info()).doc_count, 400);
  ok('resume');

  // A second pull of an unchanged database moves nothing.
  const again = await b.replicate.from(hubDb);
  assert.equal(again.docs_written, 0);
  ok('noop');

  // Documents whose _rev disagrees with their _revisions (PouchDB's own bulkDocs with
  // new_edits: false takes _revisions, and so does CouchDB): written by PouchDB on either side,
  // replicated both ways, and the revision everywhere is the one _revisions names.
  const h = (c) => c.repeat(32);
  const odd = mem('odd');
  await odd.bulkDocs([{ _id: 'mismatch-local', _rev: `1-${h('a')}`, _revisions: { start: 3, ids: [h('c'), h('b'), h('a')] }, v: 1 }], { new_edits: false });
  const hubOdd = remote(url('mismatch'), user, password);
  const sent = await hubOdd.bulkDocs([{ _id: 'mismatch-remote', _rev: `2-${h('f')}`, _revisions: { start: 4, ids: [h('d'), h('e'), h('f')] }, v: 2 }], { new_edits: false });
  assert.ok(sent.every((r) => !r.error), JSON.stringify(sent));
  const both = await odd.sync(hubOdd);
  assert.equal(both.push.ok, true);
  assert.equal(both.pull.ok, true);
  assert.equal(both.push.docs_written, 1);
  assert.equal(both.pull.docs_written, 1);
  assert.equal((await hubOdd.get('mismatch-local'))._rev, `3-${h('c')}`);
  assert.equal((await odd.get('mismatch-remote'))._rev, `4-${h('d')}`);
  const path = await hubOdd.get('mismatch-remote', { revs: true });
  assert.deepEqual(path._revisions, { start: 4, ids: [h('d'), h('e'), h('f')] });
  assert.deepEqual(await dump(odd), await dump(hubOdd));
  ok('revisions-mismatch');

  // Mango through pouchdb-find against the hub: an index, a sorted query, explain, delete.
  const fdb = remote(url('find'), user, password);
  await fdb.bulkDocs(Array.from({ length: 20 }, (_, i) => ({ _id: `Observation/f${String(i).padStart(2, '0')}`, resourceType: 'Observation', n: i % 5, value: i })));
  const created = await fdb.createIndex({ index: { fields: ['n'] }, ddoc: 'by-n', name: 'n' });
  assert.equal(created.result, 'created');
  const found = await fdb.find({ selector: { n: { $gte: 3 } }, sort: [{ n: 'desc' }], fields: ['_id', 'n'], limit: 3 });
  assert.equal(found.docs.length, 3);
  assert.ok(found.docs.every((d) => d.n === 4 && Object.keys(d).join() === '_id,n'), JSON.stringify(found));
  const page2 = await fdb.find({ selector: { value: { $gt: 9 } }, limit: 5, bookmark: (await fdb.find({ selector: { value: { $gt: 9 } }, limit: 5 })).bookmark });
  assert.deepEqual(page2.docs.map((d) => d.value), [15, 16, 17, 18, 19]);
  const indexes = await fdb.getIndexes();
  assert.equal(indexes.indexes.length, 2);
  const explained = await fdb.explain({ selector: { n: 3 } });
  assert.equal(explained.index.name, 'n');
  await fdb.deleteIndex(indexes.indexes[1]);
  assert.equal((await fdb.getIndexes()).indexes.length, 1);
  ok('find');

  // Bad credentials: an authentication error, not data.
  const wrong = remote(url('interop'), user, 'not-the-password');
  await assert.rejects(wrong.info(), (e) => e.status === 401);
  ok('auth');
});
