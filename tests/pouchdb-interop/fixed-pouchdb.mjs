// PouchDB 9.0.0 with the one fix docs/pouchdb.md gives integrators: a replication run that has
// ended (aborted on an error, then retried by a new run) starts no further batch, reads no
// further page of the changes feed and writes no checkpoint for a page it reads. Unfixed, the ended run finishes its batch in flight, drops
// the pages it had queued, reads on past them and writes checkpoints beyond them, so the
// documents on those pages are never fetched again (issue 25, ADR 23).
//
// The fix is applied to a copy beside the installed file (lib/index-hearth-fixed.js), by exact
// text, so a PouchDB whose code moved makes this fail loudly instead of testing nothing.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const installed = require.resolve('pouchdb');
const fixed = path.join(path.dirname(installed), 'index-hearth-fixed.js');

const FIXES = [
  [
    '  function startNextBatch() {\n    if (returnValue.cancelled || currentBatch) {',
    '  function startNextBatch() {\n    if (returnValue.cancelled || currentBatch || replicationCompleted) {',
  ],
  [
    '  function onChangesComplete(changes) {\n    changesPending = false;\n',
    '  function onChangesComplete(changes) {\n    changesPending = false;\n    if (replicationCompleted) {\n      return;\n    }\n',
  ],
  [
    '  function getChanges() {\n    if (!(\n      !changesPending &&',
    '  function getChanges() {\n    if (!(\n      !replicationCompleted &&\n      !changesPending &&',
  ],
];

let text = fs.readFileSync(installed, 'utf8');
for (const [before, after] of FIXES) {
  const at = text.indexOf(before);
  if (at < 0 || text.indexOf(before, at + 1) >= 0) {
    throw new Error(`${installed}: the replicator code this fix applies to is not there exactly once; check the PouchDB version (9.0.0 expected)`);
  }
  text = text.slice(0, at) + after + text.slice(at + before.length);
}
if (!fs.existsSync(fixed) || fs.readFileSync(fixed, 'utf8') !== text) fs.writeFileSync(fixed, text);

export default require(fixed);
