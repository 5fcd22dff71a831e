// A CouchDB-compatible server written by others: express-pouchdb over PouchDB's in-memory
// adapter, on 127.0.0.1 and a free port. Seeds database `seeded` with documents, a conflict, a
// deletion and an attachment (unless --empty); prints `listening URL`; serves until stdin closes.
import express from 'express';
import expressPouchDB from 'express-pouchdb';
import { PouchDB } from './common.mjs';

const MemPouch = PouchDB.defaults({ adapter: 'memory' });
const app = express();
app.use('/', expressPouchDB(MemPouch, { mode: 'minimumForPouchDB', logPath: '/dev/null' }));

if (!process.argv.includes('--empty')) await seed();

async function seed() {
const seeded = new MemPouch('seeded');
const docs = [];
for (let i = 0; i < 60; i++) docs.push({ _id: `Observation/o${String(i).padStart(3, '0')}`, resourceType: 'Observation', value: i });
await seeded.bulkDocs(docs);
await seeded.bulkDocs(
  [
    { _id: 'Patient/p1', _rev: '2-bbbb', _revisions: { start: 2, ids: ['bbbb', 'aaaa'] }, resourceType: 'Patient', name: 'b' },
    { _id: 'Patient/p1', _rev: '2-cccc', _revisions: { start: 2, ids: ['cccc', 'aaaa'] }, resourceType: 'Patient', name: 'c' },
  ],
  { new_edits: false },
);
const gone = await seeded.put({ _id: 'Task/t1', resourceType: 'Task' });
await seeded.remove('Task/t1', gone.rev);
await seeded.put({ _id: 'Consent/c1', resourceType: 'Consent', _attachments: { 'sig.png': { content_type: 'image/png', data: Buffer.from('signature-bytes').toString('base64') } } });
}

const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
