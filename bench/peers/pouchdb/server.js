// express-pouchdb on loopback, databases in leveldb under DIR. Prints
// "listening PORT" once it accepts connections.
//   node server.js DIR
const express = require('express');
const PouchDB = require('pouchdb');
const dir = process.argv[2];
const Db = PouchDB.defaults({ prefix: dir + '/' });
const app = express();
app.use('/', require('express-pouchdb')(Db, { mode: 'minimumForPouchDB', logPath: dir + '/express-pouchdb.log' }));
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
