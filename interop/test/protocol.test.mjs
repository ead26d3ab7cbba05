// Wire-protocol behaviour that real clients depend on, beyond plain
// publish/subscribe: ping/pong per protocol version (v2 "" for 20.0.2, v1
// "#1"/"#2" for 14.3.2, auto-detected), batching, ordering, large messages,
// retained messages, channel names, shared channels, unknown procedures.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq, waitFor} from './harness.mjs';
import {SC_VERSIONS, connectSC, connectMQTT, mqttSubscribe, mqttPublish, uniq} from './clients.mjs';

const T = {timeout: 20000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;

// Short ping settings so that several ping rounds and a whole ping timeout
// fit in a couple of seconds.
const PING_INTERVAL_MS = 250;
const PING_TIMEOUT_MS = 1500;

describe('SocketCluster bridge: protocol details', () => {
  let srv;
  before(async () => {
    srv = await Sockmq.start({
      name: 'protocol',
      bridge: true,
      extraYaml: `bridge:\n  ping_interval: ${PING_INTERVAL_MS}ms\n  ping_timeout: ${PING_TIMEOUT_MS}ms`,
    });
  });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test(`ping/pong: ${v === '20' ? 'v2 ""' : 'v1 "#1"/"#2"'} detected; an idle socket outlives several ping timeouts`, T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const hs = sc.events.items.find((e) => e.type === 'connect');
          assert.equal(hs.pingTimeout, PING_TIMEOUT_MS, `handshake pingTimeout: ${JSON.stringify(hs)}`);
          const id = sc.id;
          const started = Date.now();
          // Idle (no traffic but pings/pongs) for 2 × ping_timeout.
          await waitFor(() => Date.now() - started >= 2 * PING_TIMEOUT_MS, {timeout: 3 * PING_TIMEOUT_MS, interval: 50,
            what: 'two ping timeouts'});
          const closes = sc.events.items.filter((e) => ['close', 'disconnect', 'connectAbort'].includes(e.type));
          assert.deepEqual(closes, [], 'no close while idle');
          assert.equal(sc.id, id, 'same socket');
          assert.equal(sc.state, 'open');
          const pings = sc.pings.items.map((p) => p.ping);
          assert.ok(pings.length >= 4, `at least 4 pings in ${2 * PING_TIMEOUT_MS}ms, got ${JSON.stringify(pings)}`);
          const want = v === '20' ? '' : '#1';
          // Auto mode may send both kinds until the first pong; then only the detected one.
          const tail = pings.slice(-3);
          assert.deepEqual(tail, [want, want, want], `pings after detection: ${JSON.stringify(pings)}`);
          const wrong = sc.frames.items.filter((f) => f.packet === null);
          t.diagnostic(`${pings.length} pings, ${wrong.length} non-JSON frames (wrong-protocol pings before detection)`);
          assert.ok(wrong.length <= 2, `wrong-protocol pings should stop after the first pong: ${wrong.length}`);
          // Still fully functional.
          const sub = sc.subscribe('ping/check');
          await sub.subscribed();
          await sc.publish('ping/check', 'alive');
          assert.equal(await sub.next(), 'alive');
        })(t);
      });

      test('ordering: 200 QoS 1 MQTT messages arrive in order on SC, 200 SC publishes arrive in order on MQTT', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const N = 200;
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe(`order${v}/in`);
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(dev, `order${v}/out`, {qos: 1});
          await Promise.all(Array.from({length: N}, (_, i) => mqttPublish(dev, `order${v}/in`, String(i))));
          await waitFor(() => sub.messages.items.length >= N, {timeout: 10000, what: `${N} messages on SC`});
          assert.deepEqual(sub.messages.items, Array.from({length: N}, (_, i) => i));

          for (let i = 0; i < N; i++) sc.transmitPublish(`order${v}/out`, i);
          await waitFor(() => dev.inbox.items.length >= N, {timeout: 10000, what: `${N} messages on MQTT`});
          assert.deepEqual(dev.inbox.items.map((m) => Number(m.text)), Array.from({length: N}, (_, i) => i));
        })(t);
      });

      test('large message (256 KiB) both ways', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const big = {blob: 'x'.repeat(256 * 1024), n: 1};
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe(`big${v}`);
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(dev, `big${v}`, {qos: 1});
          await sc.publish(`big${v}`, big);
          const m = await dev.inbox.next((x) => x.topic === `big${v}`);
          assert.equal(m.payload.length, JSON.stringify(big).length);
          assert.deepEqual(await sub.next(), big);
          await mqttPublish(dev, `big${v}`, JSON.stringify({...big, n: 2}));
          assert.deepEqual(await sub.next(), {...big, n: 2});
        })(t);
      });

      test('retained MQTT message is delivered to a new SC subscriber (wildcard channel, concrete topic)', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const topic = `status${v}/dev1`;
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttPublish(dev, topic, '"online"', {retain: true});
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe(`status${v}/+`);
          await sub.subscribed();
          assert.deepEqual(await sub.next(), {topic, data: 'online'});
          const f = await sc.frames.next((x) => x.packet?.event === '#publish');
          assert.equal(f.packet.data.channel, `status${v}/+`);
          assert.deepEqual(f.packet.data.data, {topic, data: 'online'});
          await mqttPublish(dev, topic, '', {retain: true}); // clear
        })(t);
      });

      test('channel names: UTF-8, spaces, empty levels and leading slash map 1:1 to topics; malformed filters are refused', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          const names = [`température/salle ${v}`, `/leading${v}/slash`, `a${v}//b`, `trailing${v}/`, `日本${v}/東京`];
          for (const name of names) {
            const sub = sc.subscribe(name);
            await sub.subscribed();
            await mqttPublish(dev, name, JSON.stringify(name));
            assert.equal(await sub.next(), name, `MQTT → SC on ${JSON.stringify(name)}`);
            await mqttSubscribe(dev, name, {qos: 1});
            await sc.publish(name, 'back');
            const m = await dev.inbox.next((x) => x.topic === name);
            assert.equal(m.text, 'back', `SC → MQTT on ${JSON.stringify(name)}`);
          }
          for (const bad of ['a/b#', 'a+/b', 'a/#/b', '']) {
            const err = await sc.subscribe(bad).failed();
            assert.ok(err.name && err.message, `subscribe ${JSON.stringify(bad)}: ${err.name}: ${err.message}`);
          }
          assert.equal(sc.state, 'open');
        })(t);
      });

      test('two sockets on one channel: one unsubscribes, the other keeps receiving', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const a = await connectSC(v, srv, cleanup);
          const b = await connectSC(v, srv, cleanup);
          const ch = `shared${v}/x`;
          const sa = a.subscribe(ch);
          const sb = b.subscribe(ch);
          await sa.subscribed();
          await sb.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttPublish(dev, ch, '1');
          assert.equal(await sa.next(), 1);
          assert.equal(await sb.next(), 1);
          sa.channel.unsubscribe();
          await a.publish(`${ch}/barrier`, 0); // processed after the unsubscribe
          await mqttPublish(dev, ch, '2');
          assert.equal(await sb.next(), 2);
          // a closes entirely: b is unaffected.
          a.close();
          await mqttPublish(dev, ch, '3');
          assert.equal(await sb.next(), 3);
          assert.equal(sa.messages.items.length, 1);
        })(t);
      });

      test('subscribe/unsubscribe churn on one channel: still exactly one delivery per message', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const other = await connectSC(v, srv, cleanup);
          const ch = `churn${v}/x`;
          const keep = other.subscribe(ch);
          await keep.subscribed();
          for (let i = 0; i < 20; i++) {
            const sub = sc.subscribe(ch);
            if (i % 2 === 0) await sub.subscribed();
            sc.socket.unsubscribe(ch);
          }
          const sub = sc.subscribe(ch);
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          for (const n of [1, 2, 3]) await mqttPublish(dev, ch, String(n));
          for (const n of [1, 2, 3]) {
            assert.equal(await sub.next(), n);
            assert.equal(await keep.next(), n);
          }
          // No duplicates from the churn: the next message is the next one.
          await mqttPublish(dev, ch, '4');
          assert.equal(await sub.next(), 4);
          assert.equal(await keep.next(), 4);
          assert.deepEqual(sub.messages.items, [1, 2, 3, 4]);
          assert.deepEqual(keep.messages.items, [1, 2, 3, 4]);
        })(t);
      });

      test('invoking an unknown procedure fails with a named error; the socket stays open', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const err = await sc.invoke('noSuchProcedure', {a: 1}).then(() => null, (e) => e);
          assert.ok(err, 'must reject');
          assert.ok(err.name && !['TimeoutError', 'Error'].includes(err.name), `${err.name}: ${err.message}`);
          t.diagnostic(`${err.name}: ${err.message}`);
          assert.equal(sc.state, 'open');
        })(t);
      });
    });
  }

  test('socketcluster-client 20.0.2 with protocolVersion: 1 gets "#1" pings (auto-detected from its "#2" pong)', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const sc = await connectSC('20', srv, cleanup, {protocolVersion: 1});
      await waitFor(() => sc.pings.items.length >= 6, {timeout: 5000, what: '6 pings'});
      const pings = sc.pings.items.map((p) => p.ping);
      assert.deepEqual(pings.slice(-3), ['#1', '#1', '#1'], JSON.stringify(pings));
      const closes = sc.events.items.filter((e) => ['close', 'disconnect'].includes(e.type));
      assert.deepEqual(closes, []);
      const sub = sc.subscribe('v1/check');
      await sub.subscribed();
      await sc.publish('v1/check', 1);
      assert.equal(await sub.next(), 1);
    })(t);
  });

  test('socketcluster-client 20.0.2 that stops answering pings is closed with 4001 and reconnects at once', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const sc = await connectSC('20', srv, cleanup);
      const sub = sc.subscribe('pong/check');
      await sub.subscribed();
      // Swallow this transport's pongs (a half-dead client, as seen by the server).
      const transport = sc.socket.transport;
      const send = transport.send.bind(transport);
      transport.send = (data) => { if (data !== '') send(data); };
      const stoppedAt = Date.now();
      const closed = await sc.events.next((e) => e.type === 'close' || e.type === 'disconnect', 3 * PING_TIMEOUT_MS, 'close');
      assert.equal(closed.code, 4001, JSON.stringify(closed));
      const after = Date.now() - stoppedAt;
      assert.ok(after >= PING_TIMEOUT_MS * 0.9, `closed after ${after}ms, before ping_timeout ${PING_TIMEOUT_MS}ms`);
      await sc.connected(3000); // 4001: the client reconnects without back-off
      await sub.subscribed(3000);
      await sc.publish('pong/check', 'back');
      assert.equal(await sub.next(), 'back');
    })(t);
  });

  test('socketcluster-client 20.0.2: batching (startBatching/flushBatch and batchOnHandshake)', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const dev = await connectMQTT(srv.mqttUrl, cleanup);
      await mqttSubscribe(dev, 'batch/#', {qos: 1});
      // batchOnHandshake: the subscribes queued before the handshake go out as one array.
      const sc = await connectSC('20', srv, cleanup, {wait: false, batchOnHandshake: true, batchOnHandshakeDuration: 200,
        batchInterval: 50});
      const subs = ['batch/a', 'batch/b', 'batch/c'].map((c) => sc.subscribe(c));
      await sc.connected();
      for (const s of subs) await s.subscribed();
      // startBatching: three publishes in one frame.
      sc.socket.startBatching();
      for (const i of [1, 2, 3]) sc.transmitPublish('batch/a', i);
      sc.socket.flushBatch();
      sc.socket.stopBatching();
      for (const i of [1, 2, 3]) {
        const m = await dev.inbox.next((x) => x.topic === 'batch/a');
        assert.equal(m.text, String(i));
        assert.equal(await subs[0].next(), i);
      }
      await mqttPublish(dev, 'batch/c', '"c"');
      assert.equal(await subs[2].next(), 'c');
    })(t);
  });

  test('socketcluster-client 20.0.2: a frame over max_frame_size closes with 1009 and the client reconnects', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const sc = await connectSC('20', srv, cleanup);
      const sub = sc.subscribe(`huge/${uniq()}`);
      await sub.subscribed();
      const err = await sc.publish(sub.name, 'x'.repeat(1100 * 1024)).then(() => null, (e) => e);
      assert.ok(err, 'oversized publish must fail');
      const closed = await sc.events.next((e) => e.type === 'close' || e.type === 'disconnect', 5000, 'close');
      assert.equal(closed.code, 1009, JSON.stringify(closed));
      await sc.connected(5000);
      await sub.subscribed(5000);
      await sc.publish(sub.name, 'small');
      assert.equal(await sub.next((x) => x === 'small'), 'small');
    })(t);
  });
});

describe('SocketCluster bridge: per-socket rate limits', () => {
  let srv;
  before(async () => {
    srv = await Sockmq.start({
      name: 'rate-limits',
      bridge: true,
      extraYaml: 'bridge:\n  subscribe_burst: 3\n  subscribe_rate: 0.01\n  invoke_burst: 2\n  invoke_rate: 0.01',
    });
  });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: subscribes and calls beyond the budget fail with RateLimitError`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        const sc = await connectSC(v, srv, cleanup);
        for (let i = 0; i < 3; i++) {
          const sub = sc.subscribe(`rate${v}/${i}`);
          await sub.subscribed();
        }
        const err = await sc.subscribe(`rate${v}/3`).failed();
        assert.equal(err.name, 'RateLimitError', `subscribeFail: ${err.name}: ${err.message}`);
        t.diagnostic(`subscribe refused: ${err.message}`);

        assert.equal(await sc.invoke('getSessionId'), sc.id);
        assert.equal(await sc.invoke('getSessionId'), sc.id);
        const ierr = await sc.invoke('getSessionId').then(() => null, (e) => e);
        assert.ok(ierr, 'the third call within a burst of 2 must fail');
        assert.equal(ierr.name, 'RateLimitError', `invoke: ${ierr.name}: ${ierr.message}`);
        // The socket stays usable: publishing is not limited by these.
        await sc.publish(`rate${v}/0`, 'still here');
        assert.equal(sc.state, 'open');
      })(t);
    });
  }
});
