#!/usr/bin/env node
'use strict';
// Load-generator coordinator: forks K worker processes that open N WebSocket clients
// between them, then takes commands as JSON lines on stdin and answers as JSON lines
// on stdout (one object per line, each with an "ev" key). bench/run.py drives it; it
// can be driven by hand too:
//
//   node coordinator.js --url ws://127.0.0.1:8000/ws/ --clients 1000 --workers 4 \
//        [--tokens tokens.txt] [--concurrency 200] [--connect-timeout 120]
//
// After start it connects all clients and prints {"ev":"connected",...}. Then:
//   {"cmd":"counts"}                                   -> {"ev":"counts", total, open, bySeq}
//   {"cmd":"wait","seqs":[1,2],"timeout":30,"idle":10} -> {"ev":"waited", ...} once every
//        connected client has every seq, or timeout s passed, or nothing arrived for idle s
//   {"cmd":"report","phases":{"fanout":[1,...,10],"burst":[1001,...]}}
//                                                      -> {"ev":"report", phases: {...}}
//   {"cmd":"close"}                                    -> {"ev":"closed"}, exit
//
// Frames: JSON text. Any frame whose text contains "seq" (normally inside the
// notification's body, e.g. body='{"seq":3,"t":1732190000123.4}') counts as a delivery
// of that seq; "t" is the trigger's send time in ms since the epoch. Other frames
// (hello, ping, ...) are counted by type; ping is ignored.
const path = require('path');
const fs = require('fs');
const readline = require('readline');
const { fork } = require('child_process');
const { performance } = require('perf_hooks');

const nowMs = () => performance.timeOrigin + performance.now();

function parseArgs(argv) {
  const a = { url: null, clients: 100, workers: 4, tokens: null, concurrency: 200,
              connectTimeout: 120, localAddresses: '', protocol: '', reconnectUrl: '' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    switch (k) {
      case '--url': a.url = v; i++; break;
      case '--clients': a.clients = parseInt(v, 10); i++; break;
      case '--workers': a.workers = parseInt(v, 10); i++; break;
      case '--tokens': a.tokens = v; i++; break;
      case '--concurrency': a.concurrency = parseInt(v, 10); i++; break;
      case '--connect-timeout': a.connectTimeout = parseFloat(v); i++; break;
      case '--local-addresses': a.localAddresses = v; i++; break;
      case '--protocol': a.protocol = v; i++; break;
      case '--reconnect-url': a.reconnectUrl = v; i++; break;
      default: die('unknown argument ' + k);
    }
  }
  if (!a.url) die('--url is required');
  if (!(a.clients > 0) || !(a.workers > 0)) die('--clients and --workers must be positive');
  return a;
}

function die(msg) {
  process.stderr.write('coordinator: ' + msg + '\n');
  process.exit(2);
}

function out(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const r2 = (x) => (x === null || x === undefined || !isFinite(x)) ? null : Math.round(x * 100) / 100;

const args = parseArgs(process.argv);
let tokens = null;
if (args.tokens) {
  tokens = fs.readFileSync(args.tokens, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);
  if (!tokens.length) die('no tokens in ' + args.tokens);
}

// ---- workers -------------------------------------------------------------------------
const workers = [];
const K = Math.min(args.workers, args.clients);
for (let w = 0; w < K; w++) {
  const child = fork(path.join(__dirname, 'worker.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const st = { child, waiting: [] };
  child.on('message', (m) => {
    const cb = st.waiting.shift();
    if (cb) cb(m);
  });
  child.on('exit', (code) => {
    if (!shuttingDown) process.stderr.write(`coordinator: worker ${w} exited with ${code}\n`);
    while (st.waiting.length) st.waiting.shift()({ ev: 'dead' });
  });
  workers.push(st);
}
let shuttingDown = false;

function ask(st, msg, timeoutMs) {
  return new Promise((resolve) => {
    let done = false;
    const t = setTimeout(() => { if (!done) { done = true; resolve({ ev: 'timeout' }); } }, timeoutMs);
    st.waiting.push((m) => { if (!done) { done = true; clearTimeout(t); resolve(m); } });
    try { st.child.send(msg); } catch (_) { done = true; clearTimeout(t); resolve({ ev: 'dead' }); }
  });
}

const askAll = (msg, timeoutMs) => Promise.all(workers.map((st) => ask(st, msg, timeoutMs)));

let connectedClients = 0;

async function connect() {
  const shares = workers.map(() => []);
  for (let i = 0; i < args.clients; i++) shares[i % K].push(i);
  const localAddresses = args.localAddresses ? args.localAddresses.split(',').filter(Boolean) : [];
  const t0 = nowMs();
  const res = await Promise.all(workers.map((st, w) => ask(st, {
    cmd: 'connect', url: args.url, indices: shares[w], tokens,
    concurrency: Math.max(1, Math.ceil(args.concurrency / K)),
    timeoutMs: args.connectTimeout * 1000, localAddresses, protocol: args.protocol || null,
    reconnectUrl: args.reconnectUrl || null,
  }, args.connectTimeout * 1000 + 10000)));
  let ok = 0, failed = 0, timedOut = false, end = t0;
  const failures = {};
  for (const r of res) {
    if (r.ev !== 'connected') { timedOut = true; continue; }
    ok += r.ok; failed += r.failed; timedOut = timedOut || r.timedOut;
    if (r.endMs > end) end = r.endMs;
    for (const [k, v] of Object.entries(r.failures || {})) failures[k] = (failures[k] || 0) + v;
  }
  connectedClients = ok;
  out({ ev: 'connected', clients: args.clients, workers: K, ok, failed, timedOut,
        connect_all_ms: r2(end - t0), failures });
}

async function counts() {
  const res = await askAll({ cmd: 'counts' }, 10000);
  const bySeq = {};
  let total = 0, open = 0;
  for (const r of res) {
    if (r.ev !== 'counts') continue;
    total += r.total; open += r.open;
    for (const [s, n] of Object.entries(r.bySeq)) bySeq[s] = (bySeq[s] || 0) + n;
  }
  return { total, open, bySeq };
}

async function waitFor(cmd) {
  const seqs = (cmd.seqs || []).map(String);
  const perSeq = cmd.expect_per_seq || connectedClients;
  const expected = perSeq * seqs.length;
  const timeoutMs = (cmd.timeout || 30) * 1000;
  const idleMs = (cmd.idle || 10) * 1000;
  const pollMs = cmd.poll_ms || 100;
  const t0 = nowMs();
  let last = -1, lastChange = t0, received = 0, reason = 'timeout', open = 0;
  // Bounded: at most timeout/poll iterations.
  for (let i = 0; i < Math.ceil(timeoutMs / pollMs) + 1; i++) {
    const c = await counts();
    open = c.open;
    received = seqs.reduce((acc, s) => acc + (c.bySeq[s] || 0), 0);
    const now = nowMs();
    if (received !== last) { last = received; lastChange = now; }
    if (received >= expected) { reason = 'complete'; break; }
    if (now - lastChange >= idleMs) { reason = 'idle'; break; }
    if (now - t0 >= timeoutMs) { reason = 'timeout'; break; }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  out({ ev: 'waited', expected, received, open, reason, elapsed_ms: r2(nowMs() - t0) });
}

async function report(cmd) {
  const phases = cmd.phases || {};
  const res = await askAll({ cmd: 'report', phases }, 60000);
  const summary = { ev: 'report', connected: connectedClients, phases: {}, frames: 0,
                    typeCounts: {}, closeCodes: {}, errors: {}, open: 0, hello: 0,
                    drain: { closes: 0, reconnects: [], failures: {}, noticeAt: [], delays: [] } };
  for (const r of res) {
    if (r.ev !== 'report') continue;
    summary.frames += r.frames; summary.open += r.open; summary.hello += r.hello;
    if (r.drain) {
      summary.drain.closes += r.drain.closes;
      for (const k of ['reconnects', 'noticeAt', 'delays']) for (const v of r.drain[k]) summary.drain[k].push(v);
      for (const [k, v] of Object.entries(r.drain.failures)) summary.drain.failures[k] = (summary.drain.failures[k] || 0) + v;
    }
    for (const key of ['typeCounts', 'closeCodes', 'errors']) {
      for (const [k, v] of Object.entries(r[key] || {})) summary[key][k] = (summary[key][k] || 0) + v;
    }
  }
  for (const [name, seqList] of Object.entries(phases)) {
    const seqs = seqList.map(String);
    let lat = [];
    let missing = 0, dups = 0, clientsMissing = 0, outOfOrder = 0, clientsCounted = 0;
    const per = {};
    for (const s of seqs) per[s] = { count: 0, t: null, first: null, last: null };
    for (const r of res) {
      if (r.ev !== 'report') continue;
      const p = r.phases[name];
      for (const v of p.lat) lat.push(v);
      missing += p.missing; dups += p.dups; clientsMissing += p.clientsMissing;
      outOfOrder += p.outOfOrder; clientsCounted += p.clientsCounted;
      for (const s of seqs) {
        const e = p.per[s];
        if (!e) continue;
        const a = per[s];
        a.count += e.count;
        if (e.t !== null && (a.t === null || e.t < a.t)) a.t = e.t;
        if (e.first !== null && (a.first === null || e.first < a.first)) a.first = e.first;
        if (e.last !== null && (a.last === null || e.last > a.last)) a.last = e.last;
      }
    }
    lat.sort((x, y) => x - y);
    const deliveries = lat.length;
    const toLast = [];
    let tMin = null, lastMax = null;
    for (const s of seqs) {
      const a = per[s];
      if (a.t !== null && a.last !== null) toLast.push(a.last - a.t);
      if (a.t !== null && (tMin === null || a.t < tMin)) tMin = a.t;
      if (a.last !== null && (lastMax === null || a.last > lastMax)) lastMax = a.last;
    }
    toLast.sort((x, y) => x - y);
    const spanMs = (tMin !== null && lastMax !== null) ? lastMax - tMin : null;
    summary.phases[name] = {
      messages: seqs.length,
      clients: clientsCounted,
      expected: clientsCounted * seqs.length,
      delivered: deliveries,
      lost: missing,
      clients_missing: clientsMissing,
      duplicates: dups,
      out_of_order: outOfOrder,
      latency_ms: { p50: r2(pct(lat, 50)), p90: r2(pct(lat, 90)), p99: r2(pct(lat, 99)),
                    max: r2(lat.length ? lat[lat.length - 1] : null),
                    min: r2(lat.length ? lat[0] : null) },
      to_last_client_ms: { p50: r2(pct(toLast, 50)), max: r2(toLast.length ? toLast[toLast.length - 1] : null) },
      span_ms: r2(spanMs),
      deliveries_per_s: spanMs ? Math.round(deliveries / (spanMs / 1000)) : null,
      per_seq: Object.fromEntries(seqs.map((s) => [s, {
        count: per[s].count,
        to_last_ms: (per[s].t !== null && per[s].last !== null) ? r2(per[s].last - per[s].t) : null,
        to_first_ms: (per[s].t !== null && per[s].first !== null) ? r2(per[s].first - per[s].t) : null,
      }])),
    };
  }
  out(summary);
}

async function close() {
  shuttingDown = true;
  await askAll({ cmd: 'close' }, 5000);
  out({ ev: 'closed' });
  for (const st of workers) { try { st.child.kill(); } catch (_) {} }
  process.exit(0);
}

async function main() {
  await connect();
  const rl = readline.createInterface({ input: process.stdin });
  let busy = Promise.resolve();
  rl.on('line', (line) => {
    line = line.trim();
    if (!line) return;
    let cmd;
    try { cmd = JSON.parse(line); } catch (_) { out({ ev: 'error', message: 'bad command' }); return; }
    busy = busy.then(async () => {
      try {
        if (cmd.cmd === 'counts') out({ ev: 'counts', ...(await counts()) });
        else if (cmd.cmd === 'wait') await waitFor(cmd);
        else if (cmd.cmd === 'report') await report(cmd);
        else if (cmd.cmd === 'close') await close();
        else out({ ev: 'error', message: 'unknown cmd ' + cmd.cmd });
      } catch (err) {
        out({ ev: 'error', message: String(err && err.stack || err) });
      }
    });
  });
  rl.on('close', () => { busy.then(close); });
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1); });
