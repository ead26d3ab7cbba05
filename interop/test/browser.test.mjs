// Headless Chromium (Debian's /usr/bin/chromium driven by playwright-core,
// no downloaded browser) loading the browser bundles shipped in the npm
// packages (scenario 8):
//
//  - socketcluster-client 20.0.2 (ES module) and 14.3.2 (UMD): the page
//    subscribes to sensors/room1 through sockmq's bridge and shows received
//    values in the DOM; an MQTT.js device publishes; a click on the page
//    publishes back, and the device receives it;
//  - login from the page, then a page reload: the token kept in
//    localStorage authenticates the new connection without a new login;
//  - MQTT.js's browser bundle over ws://…/mqtt from the page, talking to an
//    SC client and an MQTT device in Node;
//  - cross-site WebSocket hijacking: the pages are served from another port,
//    whose origin the tests list in listeners.http.allowed_origins; a page
//    from an origin that is not listed cannot open /mqtt or /socketcluster/.
//
// On failure a screenshot, the page's console and its DOM status go to
// interop/artifacts/ and into the error message.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {readFile, mkdir, writeFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {chromium} from 'playwright-core';
import {Sockmq, artifactsDir, interopDir, annotate} from './harness.mjs';
import {connectSC, connectMQTT, mqttSubscribe, mqttPublish} from './clients.mjs';

const T = {timeout: 45000};
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const WAIT = {timeout: 10000};

// The browser bundles shipped in the npm packages.
const BUNDLES = {
  sc20: path.join(interopDir, 'node_modules/socketcluster-client/socketcluster-client.min.js'), // ES module
  sc14: path.join(interopDir, 'node_modules/sc14/socketcluster.min.js'), // UMD: window.socketCluster
  mqtt: path.join(interopDir, 'node_modules/mqtt/dist/mqtt.min.js'), // IIFE: window.mqtt
};

const PAGE_HEAD = `<!doctype html>
<html><head><meta charset="utf-8"><title>sockmq interop</title>
<style>body{font-family:sans-serif;margin:2em} #values li{font-family:monospace}</style>
</head><body>
<h1>sensors/room1</h1>
<p>status: <span id="status">loading</span> · auth: <span id="auth">-</span></p>
<ul id="values"></ul>
<p><input id="msg" value="ack from the browser"> <button id="send">publish</button> <span id="sent"></span></p>
<pre id="log"></pre>`;

const PAGE_HELPERS = `
  const $ = (id) => document.getElementById(id);
  const setStatus = (s) => { $('status').textContent = s; };
  const setAuth = (s) => { $('auth').textContent = s; };
  const log = (s) => { $('log').textContent += s + '\\n'; };
  const show = (data) => {
    const li = document.createElement('li');
    li.textContent = typeof data === 'string' ? data : JSON.stringify(data);
    $('values').append(li);
  };
  const params = new URLSearchParams(location.search);
  const opts = {hostname: '127.0.0.1', port: Number(params.get('port')), path: '/socketcluster/',
    autoReconnectOptions: {initialDelay: 100, randomness: 100, maxDelay: 1000}};
  const subOpts = params.get('waitForAuth') ? {waitForAuth: true} : undefined;
  $('send').addEventListener('click', async () => {
    try { await window.publishBack({text: $('msg').value}); $('sent').textContent = 'published'; }
    catch (err) { $('sent').textContent = 'failed: ' + err.name + ': ' + err.message; }
  });`;

// SC page: one adapter per client generation.
function scPage(version) {
  const body = version === '20'
    ? `import {create} from '/sc20.js';
       ${PAGE_HELPERS}
       const socket = create(opts);
       window.scVersion = socket.version;
       const on = (name, fn) => { (async () => { for await (const x of socket.listener(name)) fn(x); })(); };
       on('error', ({error}) => log('error ' + error.name + ': ' + error.message));
       on('connect', (s) => { setStatus(socket.isSubscribed('sensors/room1') ? 'subscribed' : 'connected'); setAuth(socket.authState); });
       on('authStateChange', () => setAuth(socket.authState));
       const ch = socket.subscribe('sensors/room1', subOpts);
       (async () => { for await (const data of ch) show(data); })();
       (async () => { for await (const {error} of ch.listener('subscribeFail')) setStatus('subscribeFail ' + error.name); })();
       (async () => { for await (const _ of ch.listener('subscribe')) setStatus('subscribed'); })();
       window.publishBack = (d) => socket.invokePublish('sensors/room1/ack', d);
       window.login = (username, password) => socket.invoke('login', {username, password});`
    : `${PAGE_HELPERS}
       const socket = window.socketCluster.create({...opts, multiplex: false});
       window.scVersion = window.socketCluster.version;
       socket.on('error', (error) => log('error ' + error.name + ': ' + error.message));
       socket.on('connect', () => { setStatus(socket.isSubscribed('sensors/room1') ? 'subscribed' : 'connected'); setAuth(socket.authState); });
       socket.on('authStateChange', () => setAuth(socket.authState));
       const ch = socket.subscribe('sensors/room1', subOpts);
       ch.watch(show);
       ch.on('subscribeFail', (error) => setStatus('subscribeFail ' + error.name));
       ch.on('subscribe', () => setStatus('subscribed'));
       window.publishBack = (d) => new Promise((resolve, reject) =>
         socket.publish('sensors/room1/ack', d, (err) => err ? reject(err) : resolve()));
       window.login = (username, password) => new Promise((resolve, reject) =>
         socket.emit('login', {username, password}, (err, res) => err ? reject(err) : resolve(res)));`;
  return `${PAGE_HEAD}
${version === '14' ? '<script src="/sc14.js"></script>' : ''}
<script type="module">
${body}
</script>
</body></html>`;
}

// Opens plain WebSockets to /mqtt and /socketcluster/ and records whether
// each opened or was refused.
function probePage() {
  return `${PAGE_HEAD}
<script>
  const port = new URLSearchParams(location.search).get('port');
  const probe = (url, protocols) => new Promise((resolve) => {
    const ws = new WebSocket(url, protocols);
    ws.onopen = () => { ws.close(); resolve('open'); };
    ws.onerror = () => resolve('refused');
  });
  window.results = Promise.all([
    probe('ws://127.0.0.1:' + port + '/mqtt', ['mqtt']),
    probe('ws://127.0.0.1:' + port + '/socketcluster/'),
  ]);
</script>
</body></html>`;
}

// MQTT.js browser bundle over WebSocket /mqtt.
function mqttPage() {
  return `${PAGE_HEAD}
<script src="/mqtt.js"></script>
<script>
  ${PAGE_HELPERS}
  const client = window.mqtt.connect('ws://127.0.0.1:' + params.get('port') + '/mqtt',
    {protocolVersion: 5, reconnectPeriod: 0, clientId: 'browser-' + Math.random().toString(16).slice(2)});
  client.on('error', (err) => log('error ' + err.message));
  client.on('connect', () => {
    setStatus('connected');
    client.subscribe('sensors/#', {qos: 1}, (err) => setStatus(err ? 'subscribe failed ' + err.message : 'subscribed'));
  });
  client.on('message', (topic, payload) => show(topic + ' ' + new TextDecoder().decode(payload)));
  window.publishBack = (d) => new Promise((resolve, reject) =>
    client.publish('sensors/room1', JSON.stringify(d), {qos: 1}, (err) => err ? reject(err) : resolve()));
</script>
</body></html>`;
}

/** Serves the pages and bundles on 127.0.0.1:0. */
async function serveStatic() {
  const files = {
    '/sc20.js': await readFile(BUNDLES.sc20),
    '/sc14.js': await readFile(BUNDLES.sc14),
    '/mqtt.js': await readFile(BUNDLES.mqtt),
  };
  const pages = {'/sc20.html': scPage('20'), '/sc14.html': scPage('14'), '/mqtt.html': mqttPage(), '/probe.html': probePage()};
  const server = http.createServer((req, res) => {
    const {pathname} = new URL(req.url, 'http://x');
    if (pages[pathname]) {
      res.writeHead(200, {'content-type': 'text/html; charset=utf-8'}).end(pages[pathname]);
    } else if (files[pathname]) {
      res.writeHead(200, {'content-type': 'text/javascript; charset=utf-8'}).end(files[pathname]);
    } else if (pathname === '/favicon.ico') {
      res.writeHead(204).end();
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {server, base: `http://127.0.0.1:${server.address().port}`};
}

/**
 * Opens a page in a fresh browser context and runs fn(page); on failure
 * saves a screenshot and the console to artifacts/<name>.* and adds the
 * page's status, log and console to the error.
 */
async function withPage(browser, cleanup, name, fn) {
  const context = await browser.newContext();
  cleanup.add(() => context.close());
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  try {
    await fn(page);
    const pageLog = await page.textContent('#log');
    assert.equal(pageLog, '', 'no errors reported on the page');
  } catch (err) {
    await mkdir(artifactsDir, {recursive: true});
    const base = path.join(artifactsDir, name);
    await page.screenshot({path: `${base}.png`, fullPage: true}).catch(() => {});
    await writeFile(`${base}.console.txt`, consoleLines.join('\n')).catch(() => {});
    const status = await page.textContent('#status', {timeout: 1000}).catch(() => '?');
    const auth = await page.textContent('#auth', {timeout: 1000}).catch(() => '?');
    const pageLog = await page.textContent('#log', {timeout: 1000}).catch(() => '?');
    annotate(err, `page status: ${status}; auth: ${auth}\npage log: ${String(pageLog).trim().split('\n').slice(-5).join(' | ')}\n` +
      `screenshot: ${base}.png\npage console (last 10):\n  ${consoleLines.slice(-10).join('\n  ')}`);
    throw err;
  }
}

/** sockmq_limit_refusals_total{limit="allowed_origins"} from /metrics. */
async function originRefusals(srv) {
  const body = await (await fetch(`${srv.httpUrl}/metrics`)).text();
  const m = body.match(/^sockmq_limit_refusals_total\{limit="allowed_origins"\} (\d+)/m);
  return m ? Number(m[1]) : 0;
}

const textIs = (sel, want) => [(a) => document.querySelector(a[0]).textContent === a[1], [sel, want]];

describe('headless Chromium with the browser bundles from npm', () => {
  let srv;
  let browser;
  let web;
  const USERS = {alice: 'alice-pw', device: 'device-pw'};
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found (apt-get install chromium)`);
    for (const f of Object.values(BUNDLES)) assert.ok(existsSync(f), `browser bundle missing: ${f}`);
    web = await serveStatic();
    // The pages come from another port: their origin must be listed.
    srv = await Sockmq.start({name: 'browser', bridge: true, allowedOrigins: [web.base]});
    browser = await chromium.launch({executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000});
  });
  after(async () => {
    await browser?.close().catch(() => {});
    if (web) await new Promise((resolve) => { web.server.closeAllConnections(); web.server.close(resolve); });
    await srv?.close();
  });

  for (const version of ['20', '14']) {
    test(`socketcluster-client ${version === '20' ? '20.0.2' : '14.3.2'} bundle: MQTT device → DOM, page click → device`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        const dev = await connectMQTT(srv.mqttUrl, cleanup);
        await mqttSubscribe(dev, 'sensors/#', {qos: 1});
        await withPage(browser, cleanup, `browser-sc${version}`, async (page) => {
          await page.goto(`${web.base}/sc${version}.html?port=${srv.httpPort}`, WAIT);
          await page.waitForFunction(...textIs('#status', 'subscribed'), WAIT);
          t.diagnostic(`page runs socketcluster-client ${await page.evaluate(() => window.scVersion)} in Chromium ${browser.version()}`);

          await mqttPublish(dev, 'sensors/room1', JSON.stringify({t: 21.5}));
          await mqttPublish(dev, 'sensors/room1', 'plain text');
          await page.waitForFunction(() => document.querySelectorAll('#values li').length >= 2, null, WAIT);
          assert.deepEqual(await page.$$eval('#values li', (lis) => lis.map((li) => li.textContent)), ['{"t":21.5}', 'plain text']);

          await page.click('#send');
          const m = await dev.inbox.next((x) => x.topic === 'sensors/room1/ack', 10000);
          assert.deepEqual(JSON.parse(m.text), {text: 'ack from the browser'});
          await page.waitForFunction(...textIs('#sent', 'published'), WAIT);
        });
      })(t);
    });
  }

  test('MQTT.js browser bundle over ws://…/mqtt ↔ MQTT device and SC client', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const dev = await connectMQTT(srv.mqttUrl, cleanup);
      await mqttSubscribe(dev, 'sensors/room1', {qos: 1});
      const sc = await connectSC('20', srv, cleanup);
      const sub = sc.subscribe('sensors/room1');
      await sub.subscribed();
      await withPage(browser, cleanup, 'browser-mqttjs', async (page) => {
        await page.goto(`${web.base}/mqtt.html?port=${srv.httpPort}`, WAIT);
        await page.waitForFunction(...textIs('#status', 'subscribed'), WAIT);
        await mqttPublish(dev, 'sensors/hall', '19');
        await sc.publish('sensors/kitchen', 'from SC');
        await page.waitForFunction(() => document.querySelectorAll('#values li').length >= 2, null, WAIT);
        const values = await page.$$eval('#values li', (lis) => lis.map((li) => li.textContent));
        assert.deepEqual(values.sort(), ['sensors/hall 19', 'sensors/kitchen from SC']);
        await page.click('#send');
        const m = await dev.inbox.next((x) => x.topic === 'sensors/room1', 10000);
        assert.deepEqual(JSON.parse(m.text), {text: 'ack from the browser'});
        assert.deepEqual(await sub.next(), {text: 'ack from the browser'});
      });
    })(t);
  });

  test('a page from an origin that is not listed cannot open /mqtt or /socketcluster/', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const other = await serveStatic(); // another port: another origin, not in allowed_origins
      cleanup.add(() => new Promise((resolve) => { other.server.closeAllConnections(); other.server.close(resolve); }));
      const before = await originRefusals(srv);
      await withPage(browser, cleanup, 'browser-origin-refused', async (page) => {
        await page.goto(`${other.base}/probe.html?port=${srv.httpPort}`, WAIT);
        assert.deepEqual(await page.evaluate(() => window.results), ['refused', 'refused'],
          `[/mqtt, /socketcluster/] from ${other.base}`);
      });
      assert.equal(await originRefusals(srv) - before, 2, 'both refusals counted in sockmq_limit_refusals_total');
      // The same page from the listed origin gets through: the refusal is the origin's.
      await withPage(browser, cleanup, 'browser-origin-listed', async (page) => {
        await page.goto(`${web.base}/probe.html?port=${srv.httpPort}`, WAIT);
        assert.deepEqual(await page.evaluate(() => window.results), ['open', 'open'], `[/mqtt, /socketcluster/] from ${web.base}`);
      });
      t.diagnostic(`refused from ${other.base}, accepted from ${web.base}`);
    })(t);
  });

  describe('with a password file (allow_anonymous: false)', () => {
    let authSrv;
    before(async () => {
      authSrv = await Sockmq.start({name: 'browser-auth', bridge: true, users: USERS, allowAnonymous: false, allowedOrigins: [web.base]});
    });
    after(async () => { await authSrv?.close(); });

    for (const version of ['20', '14']) {
      test(`socketcluster-client ${version === '20' ? '20.0.2' : '14.3.2'} bundle: login, then a page reload is authenticated by the token in localStorage`, T, async (t) => {
        await authSrv.guard(async (_t, cleanup) => {
          const dev = await connectMQTT(authSrv.mqttUrl, cleanup, {username: 'device', password: USERS.device});
          await withPage(browser, cleanup, `browser-auth-sc${version}`, async (page) => {
            const url = `${web.base}/sc${version}.html?port=${authSrv.httpPort}&waitForAuth=1`;
            await page.goto(url, WAIT);
            await page.waitForFunction(...textIs('#auth', 'unauthenticated'), WAIT);
            assert.equal(await page.textContent('#status'), 'connected', 'waitForAuth: not subscribed before login');
            await page.evaluate(() => window.login('alice', 'alice-pw'));
            await page.waitForFunction(...textIs('#auth', 'authenticated'), WAIT);
            await page.waitForFunction(...textIs('#status', 'subscribed'), WAIT);
            const stored = await page.evaluate(() => Object.keys(localStorage));
            t.diagnostic(`localStorage keys: ${JSON.stringify(stored)}`);
            assert.ok(stored.some((k) => /authtoken/i.test(k)), `token kept in localStorage: ${JSON.stringify(stored)}`);

            await page.reload(WAIT);
            await page.waitForFunction(...textIs('#auth', 'authenticated'), WAIT);
            await page.waitForFunction(...textIs('#status', 'subscribed'), WAIT);
            await mqttPublish(dev, 'sensors/room1', '"after reload"');
            await page.waitForFunction(() => document.querySelectorAll('#values li').length >= 1, null, WAIT);
            assert.deepEqual(await page.$$eval('#values li', (lis) => lis.map((li) => li.textContent)), ['after reload']);
          });
        })(t);
      });
    }
  });
});
