#!/usr/bin/env node
'use strict';
// A trivial node `ws` broadcast (and echo) server: the load generator's ceiling.
//
//   node bench/echo/server.js --port 8300 [--host 127.0.0.1] [--backlog 4096]
//
// WebSocket on any path: sends {"type":"hello",...} on open, echoes every text frame
// back. HTTP POST /announce?seq=S&count=C (or a JSON body {"seq":S,"count":C,"t":T}) sends C
// notification frames, seqs S..S+C-1, back to back to every open client; each frame is
// encoded once and carries body = '{"seq":..,"t":<ms since epoch>}' stamped just before
// its broadcast (the first uses T, the trigger's time, when given): the same shape
// notify and the baseline send. GET /stats answers the number of open clients.
const path = require('path');
const http = require('http');
const { performance } = require('perf_hooks');
const { createRequire } = require('module');

// ws is installed once, in bench/loadgen/node_modules.
const req = createRequire(path.join(__dirname, '..', 'loadgen', 'package.json'));
const WebSocket = req('ws');

const nowMs = () => performance.timeOrigin + performance.now();

const args = { port: 8300, host: '127.0.0.1', backlog: 4096 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) { process.stderr.write('unknown argument ' + process.argv[i] + '\n'); process.exit(2); }
  args[k] = k === 'host' ? process.argv[i + 1] : parseInt(process.argv[i + 1], 10);
}

const wss = new WebSocket.WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: true });
let nextId = 1;

function broadcast(seq, t) {
  const frame = JSON.stringify({
    type: 'notification',
    notification: { id: nextId++, kind: 'announcement', title: 'bench',
                    body: JSON.stringify({ seq, t }), level: 'info', url: '', data: {} },
  });
  let n = 0;
  for (const ws of wss.clients) {
    if (ws.readyState === WebSocket.OPEN) { ws.send(frame); n++; }
  }
  return n;
}

const server = http.createServer((reqq, res) => {
  const u = new URL(reqq.url, 'http://x');
  if (reqq.method === 'GET' && u.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ clients: wss.clients.size }));
    return;
  }
  if (reqq.method === 'POST' && u.pathname.replace(/\/$/, '') === '/announce') {
    let body = '';
    reqq.on('data', (d) => { body += d; if (body.length > 65536) reqq.destroy(); });
    reqq.on('end', () => {
      let p = {};
      try { p = body ? JSON.parse(body) : {}; } catch (_) { p = {}; }
      const seq = parseInt(p.seq ?? u.searchParams.get('seq') ?? '0', 10);
      const count = Math.max(1, Math.min(10000, parseInt(p.count ?? u.searchParams.get('count') ?? '1', 10)));
      const t0 = (p.t !== undefined && p.t !== null) ? Number(p.t) : null;
      let sent = 0;
      for (let i = 0; i < count; i++) sent += broadcast(seq + i, (i === 0 && t0 !== null) ? t0 : nowMs());
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sent, clients: wss.clients.size }));
    });
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":{"code":"not_found","message":"not found"}}');
});

server.on('upgrade', (reqq, socket, head) => {
  wss.handleUpgrade(reqq, socket, head, (ws) => {
    ws.send(JSON.stringify({ type: 'hello', cursor: 0, unread: 0, heartbeat: 25 }));
    ws.on('message', (data, isBinary) => { ws.send(data, { binary: isBinary }); });
    ws.on('error', () => {});
  });
});

server.listen({ port: args.port, host: args.host, backlog: args.backlog }, () => {
  process.stdout.write(`echo server on ${args.host}:${args.port} pid ${process.pid}\n`);
});

const stop = () => { for (const ws of wss.clients) ws.terminate(); server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
