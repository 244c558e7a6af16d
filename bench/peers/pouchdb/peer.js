// The PouchDB side of gridwork-bench sync, on the same documents as ours
// (a report: category, a 40-character Chinese description, address,
// location, grid). Prints one JSON line.
//   node peer.js push URL DIR N BATCH   a device's N unsent reports, replicated to URL
//   node peer.js fill URL N             N reports written straight into URL (not timed)
//   node peer.js pull URL DIR BATCH     a fresh device's initial replication from URL
//   node peer.js push-photos URL DIR N KIB  N reports, each with a photo of KIB KiB
//                                       (random bytes) as an attachment, replicated to URL
const fs = require('fs');
const PouchDB = require('pouchdb');

function report(i) {
  return {
    _id: 'r' + String(i).padStart(7, '0'),
    type: 'incident',
    category_code: '0602',
    description: '楼道堆放杂物，占用消防通道，存在火灾隐患，请尽快清理。第 ' + i + ' 号',
    address: '南京东路 100 弄',
    location: { lat: 31.23, lon: 121.465, accuracy_m: 6.0 },
    grid_code: 'G-001',
    state: 'reported',
    created_at_ms: 1796000000000 + i,
  };
}

function peakKib() {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}

async function write(db, n) {
  for (let i = 0; i < n; i += 500) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + 500); j++) docs.push(report(j));
    await db.bulkDocs(docs);
  }
}

(async () => {
  const [mode, url] = process.argv.slice(2, 4);
  if (mode === 'push') {
    const [dir, n, batch] = [process.argv[4], Number(process.argv[5]), Number(process.argv[6])];
    const local = new PouchDB(dir + '/device');
    await write(local, n);
    const started = process.hrtime.bigint();
    const result = await local.replicate.to(url, { batch_size: batch });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(JSON.stringify({ ms, written: result.docs_written }));
  } else if (mode === 'push-photos') {
    const [dir, n, kib] = [process.argv[4], Number(process.argv[5]), Number(process.argv[6])];
    const local = new PouchDB(dir + '/device');
    for (let i = 0; i < n; i++) {
      const doc = report(i);
      doc._attachments = { 'photo.jpg': { content_type: 'image/jpeg', data: require('crypto').randomBytes(kib * 1024) } };
      await local.put(doc);
    }
    const started = process.hrtime.bigint();
    const result = await local.replicate.to(url);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(JSON.stringify({ ms, written: result.docs_written }));
  } else if (mode === 'fill') {
    await write(new PouchDB(url), Number(process.argv[4]));
    console.log(JSON.stringify({ ok: true }));
  } else if (mode === 'pull') {
    const [dir, batch] = [process.argv[4], Number(process.argv[5])];
    const local = new PouchDB(dir + '/fresh');
    const started = process.hrtime.bigint();
    const result = await local.replicate.from(url, { batch_size: batch });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(JSON.stringify({ ms, written: result.docs_written, peak_kib: peakKib() }));
  } else {
    throw new Error('mode: push, push-photos, fill or pull');
  }
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
