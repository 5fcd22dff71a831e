// The reference for the fault test: express-pouchdb (a CouchDB-compatible server written by
// others) over PouchDB's LevelDB adapter, so its data survives `kill -9` like the hub's does.
// Usage: node reference-server.mjs DIR PORT — prints `listening URL`, serves until killed.
import express from 'express';
import expressPouchDB from 'express-pouchdb';
import { PouchDB } from './common.mjs';

const [dir, port] = process.argv.slice(2);
const DiskPouch = PouchDB.defaults({ prefix: `${dir}/` });
const app = express();
app.use('/', expressPouchDB(DiskPouch, { mode: 'minimumForPouchDB', logPath: '/dev/null', configPath: `${dir}/config.json` }));
const server = app.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
