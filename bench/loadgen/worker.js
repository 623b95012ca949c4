'use strict';
// One load-generator worker: opens its share of the WebSocket clients and counts,
// per client and per sequence number, every notification frame it receives.
//
// Driven by the coordinator over the IPC channel (process.send / 'message'):
//   {cmd: 'connect', ...options}  -> {ev: 'connected', ...}
//   {cmd: 'counts'}                -> {ev: 'counts', bySeq: {seq: n}, total, open}
//   {cmd: 'report', phases}        -> {ev: 'report', ...per-phase raw data}
//   {cmd: 'close'}                 -> {ev: 'closed'}, then exit
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

// Sub-millisecond wall clock in ms since the epoch (the trigger stamps Date.now()-based
// floats; both run on the same machine).
const T0 = performance.timeOrigin;
const nowMs = () => T0 + performance.now();

let clients = [];          // {ws, idx, open, seqs: Map(seq -> count), hello, closedEarly}
const bySeq = new Map();   // seq -> {count, t, first, last, lat: number[]}
let frames = 0, notifFrames = 0, otherFrames = 0, badFrames = 0, pingFrames = 0;
const typeCounts = {};
let closeCodes = {};
let errors = {};
// Graceful drain (bench scenario "drain"): clients closed with 1012 reconnect to
// `reconnectUrl` after the delay in the close reason, resuming with their cursor.
let closing = false;
const drain = { closes: 0, reconnects: [], failures: {}, noticeAt: [], delays: [] };

// Fast path: notification frames carry a body with "seq" and "t" (as an escaped JSON
// string inside the outer JSON, or as plain keys). Match both without a full parse.
const SEQ_RE = /\\?"seq\\?"\s*:\s*(\d+)/;
const T_RE = /\\?"t\\?"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/;
const TYPE_RE = /"type"\s*:\s*"([A-Za-z_.-]+)"/;
const ID_RE = /"notification":\{"id":(\d+)/;

function onFrame(c, data, isBinary) {
  const recv = nowMs();
  frames++;
  if (isBinary) { badFrames++; return; }
  const s = typeof data === 'string' ? data : data.toString('utf8');
  const m = SEQ_RE.exec(s);
  const idm = ID_RE.exec(s);
  if (idm) c.cursor = Math.max(c.cursor || 0, Number(idm[1]));
  if (m) {
    const tm = T_RE.exec(s);
    const seq = Number(m[1]);
    notifFrames++;
    c.seqs.set(seq, (c.seqs.get(seq) || 0) + 1);
    if (c.seqs.get(seq) > 1) return; // duplicate: counted per client, not in latency
    let e = bySeq.get(seq);
    if (!e) { e = { count: 0, t: null, first: Infinity, last: 0, lat: [] }; bySeq.set(seq, e); }
    e.count++;
    if (recv < e.first) e.first = recv;
    if (recv > e.last) e.last = recv;
    if (tm) {
      const t = Number(tm[1]);
      if (e.t === null || t < e.t) e.t = t;
      e.lat.push(recv - t);
    }
    return;
  }
  // Rare frames (hello, ping, read, error...): parse properly.
  let type = '?';
  try {
    const obj = JSON.parse(s);
    type = (obj && typeof obj.type === 'string') ? obj.type : '?';
  } catch (_) {
    const tm = TYPE_RE.exec(s);
    type = tm ? tm[1] : 'invalid';
  }
  typeCounts[type] = (typeCounts[type] || 0) + 1;
  if (type === 'ping') { pingFrames++; return; }
  if (type === 'hello') {
    c.hello = true;
    try { if (c.cursor === null) c.cursor = JSON.parse(s).cursor; } catch (_) {}
  }
  otherFrames++;
}

function connectAll(opts) {
  const { url, indices, tokens, concurrency, timeoutMs, localAddresses, protocol } = opts;
  return new Promise((resolve) => {
    const start = nowMs();
    let next = 0, pending = 0, ok = 0, failed = 0, done = false;
    const failures = {};
    const deadline = setTimeout(() => finish(true), timeoutMs);
    function finish(timedOut) {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      resolve({ ok, failed, timedOut: !!timedOut, pendingAtEnd: pending,
                elapsedMs: nowMs() - start, startMs: start, endMs: nowMs(), failures });
    }
    function launch() {
      while (!done && pending < concurrency && next < indices.length) {
        const idx = indices[next++];
        const headers = {};
        if (tokens && tokens.length) headers['Authorization'] = 'Bearer ' + tokens[idx % tokens.length];
        const wsOpts = { headers, perMessageDeflate: false, handshakeTimeout: Math.min(timeoutMs, 60000) };
        if (localAddresses && localAddresses.length) wsOpts.localAddress = localAddresses[idx % localAddresses.length];
        const c = { ws: null, idx, open: false, everOpen: false, seqs: new Map(), hello: false, settled: false,
                    cursor: null, wsOpts, protocol, reconnectUrl: opts.reconnectUrl || null };
        pending++;
        let ws;
        try {
          ws = protocol ? new WebSocket(url, protocol, wsOpts) : new WebSocket(url, wsOpts);
        } catch (err) {
          pending--; failed++;
          const k = String(err.message || err).slice(0, 80);
          failures[k] = (failures[k] || 0) + 1;
          continue;
        }
        c.ws = ws;
        clients.push(c);
        const settle = (good, why) => {
          if (c.settled) return;
          c.settled = true;
          pending--;
          if (good) ok++; else { failed++; failures[why] = (failures[why] || 0) + 1; }
          if (ok + failed >= indices.length) finish(false); else launch();
        };
        ws.on('open', () => { c.open = true; c.everOpen = true; settle(true); });
        ws.on('message', (data, isBinary) => onFrame(c, data, isBinary));
        ws.on('unexpected-response', (req, res) => {
          settle(false, 'HTTP ' + res.statusCode);
          try { req.destroy(); } catch (_) {}
        });
        ws.on('error', (err) => {
          const k = String(err.code || err.message || err).slice(0, 80);
          errors[k] = (errors[k] || 0) + 1;
          settle(false, k);
        });
        ws.on('close', (code, reason) => {
          if (c.open) { closeCodes[code] = (closeCodes[code] || 0) + 1; }
          c.open = false;
          settle(false, 'closed ' + code);
          if (code === 1012 && c.reconnectUrl) drainNotice(c, reason);
        });
      }
    }
    if (indices.length === 0) finish(false); else launch();
  });
}

function drainNotice(c, reason) {
  let delay = 0;
  try { delay = Number(JSON.parse(String(reason)).reconnect_ms) || 0; } catch (_) {}
  drain.closes++;
  drain.noticeAt.push(nowMs());
  drain.delays.push(delay);
  setTimeout(() => reopen(c, 0), delay);
}

function reopen(c, attempt) {
  const url = c.reconnectUrl + (c.cursor !== null ? '?since=' + c.cursor : '');
  let ws;
  try {
    ws = c.protocol ? new WebSocket(url, c.protocol, c.wsOpts) : new WebSocket(url, c.wsOpts);
  } catch (err) {
    return retry(c, attempt, String(err.message || err).slice(0, 80));
  }
  c.ws = ws;
  let opened = false;
  ws.on('open', () => { opened = true; c.open = true; drain.reconnects.push(nowMs()); });
  ws.on('message', (data, isBinary) => onFrame(c, data, isBinary));
  ws.on('unexpected-response', (req, res) => {
    try { req.destroy(); } catch (_) {}
    retry(c, attempt, 'HTTP ' + res.statusCode);
  });
  ws.on('error', (err) => { if (!opened) retry(c, attempt, String(err.code || err.message || err).slice(0, 80)); });
  ws.on('close', (code) => {
    if (c.open) closeCodes[code] = (closeCodes[code] || 0) + 1;
    c.open = false;
  });
}

function retry(c, attempt, why) {
  if (c.retrying === attempt) return; // error and close of one attempt
  c.retrying = attempt;
  drain.failures[why] = (drain.failures[why] || 0) + 1;
  // As the JS client: full-jitter exponential backoff, random(0, min(30 s, 1 s * 2^n)).
  if (!closing) setTimeout(() => reopen(c, attempt + 1), Math.random() * Math.min(30000, 1000 * 2 ** attempt));
}

function countsMsg() {
  const o = {};
  let total = 0;
  for (const [seq, e] of bySeq) { o[seq] = e.count; total += e.count; }
  let open = 0;
  for (const c of clients) if (c.open) open++;
  return { ev: 'counts', bySeq: o, total, open, frames };
}

// Raw per-phase data for the coordinator, which merges all workers.
function report(phases) {
  const out = { ev: 'report', phases: {}, frames, notifFrames, otherFrames, badFrames,
                pingFrames, typeCounts, closeCodes, errors, drain,
                open: clients.filter((c) => c.open).length, clients: clients.length,
                hello: clients.filter((c) => c.hello).length };
  for (const [name, seqList] of Object.entries(phases)) {
    const seqs = seqList.map(Number);
    const per = {};
    const lat = [];
    for (const s of seqs) {
      const e = bySeq.get(s);
      if (!e) { per[s] = { count: 0, t: null, first: null, last: null }; continue; }
      per[s] = { count: e.count, t: e.t, first: e.first, last: e.last };
      for (const v of e.lat) lat.push(Math.round(v * 100) / 100);
    }
    // Loss and duplicates per client, over the clients that connected.
    let missing = 0, dups = 0, clientsMissing = 0, outOfOrder = 0, clientsCounted = 0;
    const seqSet = new Set(seqs);
    for (const c of clients) {
      if (!c.everOpen) continue; // never connected: reported as a connect failure
      clientsCounted++;
      let miss = 0;
      for (const s of seqs) {
        const n = c.seqs.get(s) || 0;
        if (n === 0) miss++;
        else if (n > 1) dups += n - 1;
      }
      if (miss) clientsMissing++;
      missing += miss;
      // Order check: Map preserves insertion (arrival) order.
      let prev = -Infinity;
      for (const s of c.seqs.keys()) {
        if (!seqSet.has(s)) continue;
        if (s < prev) outOfOrder++;
        prev = s;
      }
    }
    out.phases[name] = { per, lat, missing, dups,
                         clientsMissing, outOfOrder, clientsCounted };
  }
  return out;
}

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'connect') {
      const r = await connectAll(msg);
      process.send({ ev: 'connected', ...r });
    } else if (msg.cmd === 'counts') {
      process.send(countsMsg());
    } else if (msg.cmd === 'report') {
      process.send(report(msg.phases || {}));
    } else if (msg.cmd === 'close') {
      closing = true;
      for (const c of clients) { try { c.ws && c.ws.terminate(); } catch (_) {} }
      process.send({ ev: 'closed' }, () => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    }
  } catch (err) {
    process.send({ ev: 'error', message: String(err && err.stack || err) });
  }
});

process.on('disconnect', () => process.exit(0));
