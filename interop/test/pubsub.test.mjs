// socketcluster-client 20.0.2 and 14.3.2 sharing channels with MQTT.js:
// publish/subscribe both ways (scenario 1) and wildcard channels (scenario 2).

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq} from './harness.mjs';
import {SC_VERSIONS, connectSC, connectMQTT, mqttSubscribe, mqttPublish, publishFrames} from './clients.mjs';

const T = {timeout: 20000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;

describe('SocketCluster bridge: publish/subscribe with MQTT', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'pubsub', bridge: true}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test('handshake: socket id, authState unauthenticated', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const ev = sc.events.items.find((e) => e.type === 'connect');
          assert.equal(typeof sc.id, 'string');
          assert.ok(sc.id.length > 0, 'socket id set from the handshake reply');
          assert.equal(ev.isAuthenticated, false);
          assert.equal(sc.authState, 'unauthenticated');
          assert.equal(sc.state, 'open');
        })(t);
      });

      test('the path without its trailing slash (/socketcluster) works too', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup, {path: '/socketcluster'});
          const sub = sc.subscribe('path/check');
          await sub.subscribed();
          await sc.publish('path/check', 'ok');
          assert.equal(await sub.next(), 'ok');
        })(t);
      });

      test('MQTT device → SC channel sensors/room1', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe('sensors/room1');
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 4});
          await mqttPublish(dev, 'sensors/room1', '21.5');
          assert.equal(await sub.next(), 21.5);
          await mqttPublish(dev, 'sensors/room1', JSON.stringify({t: 21.5, unit: 'C'}), {qos: 0});
          assert.deepEqual(await sub.next(), {t: 21.5, unit: 'C'});
          // A topic that is not the channel is not delivered to it: the
          // device's next message on the channel comes first.
          await mqttPublish(dev, 'sensors/room2', '1');
          await mqttPublish(dev, 'sensors/room1', '"sentinel"');
          assert.equal(await sub.next(), 'sentinel');
          const [frame] = publishFrames(sc, 'sensors/room1');
          assert.deepEqual(frame.data.data, 21.5, `push frame ${JSON.stringify(frame)}`);
        })(t);
      });

      test('SC invokePublish sensors/room1 → MQTT subscriber of sensors/#, and the SC publisher gets its own message', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const mq = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(mq, 'sensors/#', {qos: 1});
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe('sensors/room1');
          await sub.subscribed();
          await sc.publish('sensors/room1', {t: 22});
          const m = await mq.inbox.next((x) => x.topic === 'sensors/room1');
          assert.deepEqual(JSON.parse(m.text), {t: 22});
          assert.equal(m.packet.qos, 1, 'invokePublish (acked) is published with QoS 1');
          assert.equal(m.packet.retain, false);
          assert.deepEqual(await sub.next(), {t: 22});
          // transmitPublish (no ack) reaches MQTT too, at QoS 0.
          sc.transmitPublish('sensors/room1', 'fire and forget');
          const m2 = await mq.inbox.next((x) => x.topic === 'sensors/room1');
          assert.equal(m2.text, 'fire and forget');
          assert.equal(m2.packet.qos, 0, 'transmitPublish is published with QoS 0');
          assert.equal(await sub.next(), 'fire and forget');
          // The publisher got each of its messages exactly once: its next
          // message is the next thing it receives.
          await sc.publish('sensors/room1', 'sentinel');
          assert.equal(await sub.next(), 'sentinel');
        })(t);
      });

      test('SC → SC across client versions (20.0.2 ↔ 14.3.2)', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const other = v === '20' ? '14' : '20';
          const a = await connectSC(v, srv, cleanup);
          const b = await connectSC(other, srv, cleanup);
          const subB = b.subscribe('chat/lobby');
          await subB.subscribed();
          await a.publish('chat/lobby', {from: `v${v}`, text: 'hi'});
          assert.deepEqual(await subB.next(), {from: `v${v}`, text: 'hi'});
          const subA = a.subscribe('chat/lobby');
          await subA.subscribed();
          await b.publish('chat/lobby', [1, 'two', {three: 3}]);
          assert.deepEqual(await subA.next(), [1, 'two', {three: 3}]);
        })(t);
      });

      test('wildcard channels sensors/+/temp and sensors/#: delivered on the channel as subscribed, the application gets {topic, data}', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const plus = sc.subscribe('sensors/+/temp');
          const hash = sc.subscribe('sensors/#');
          await plus.subscribed();
          await hash.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttPublish(dev, 'sensors/kitchen/temp', '19.5');
          // What the stock client's channel iterator (v20: for await; v14:
          // watch) hands the application: the concrete topic and the data.
          assert.deepEqual(await plus.next(), {topic: 'sensors/kitchen/temp', data: 19.5});
          assert.deepEqual(await hash.next(), {topic: 'sensors/kitchen/temp', data: 19.5});

          // Wire level: one push per subscribed channel, named as subscribed.
          const pf = await sc.frames.next((f) => f.packet?.event === '#publish' && f.packet.data?.channel === 'sensors/+/temp');
          const hf = await sc.frames.next((f) => f.packet?.event === '#publish' && f.packet.data?.channel === 'sensors/#');
          for (const f of [pf, hf]) {
            assert.deepEqual(f.packet.data.data, {topic: 'sensors/kitchen/temp', data: 19.5}, `frame ${f.raw}`);
            assert.equal(f.packet.data.topic, undefined, 'no topic beside the envelope');
            assert.equal(f.packet.cid, undefined);
          }

          // sensors/kitchen/humidity matches only sensors/#.
          await mqttPublish(dev, 'sensors/kitchen/humidity', '40');
          assert.deepEqual(await hash.next(), {topic: 'sensors/kitchen/humidity', data: 40});
          await mqttPublish(dev, 'sensors/kitchen/temp', '"sentinel"');
          assert.deepEqual(await plus.next(), {topic: 'sensors/kitchen/temp', data: 'sentinel'}, 'humidity must not reach sensors/+/temp');
          assert.deepEqual(await hash.next(), {topic: 'sensors/kitchen/temp', data: 'sentinel'});
          // Exactly one delivery per channel per message.
          assert.equal(plus.messages.items.length, 2);
          assert.equal(hash.messages.items.length, 3);
        })(t);
      });

      test('SC publisher on an exact channel reaches SC wildcard subscribers', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const a = await connectSC(v, srv, cleanup);
          const b = await connectSC(v, srv, cleanup);
          const sub = b.subscribe('sensors/+/temp');
          await sub.subscribed();
          await a.publish('sensors/hall/temp', 18);
          assert.deepEqual(await sub.next(), {topic: 'sensors/hall/temp', data: 18});
          const f = await b.frames.next((x) => x.packet?.event === '#publish');
          assert.equal(f.packet.data.channel, 'sensors/+/temp');
        })(t);
      });

      test('publishing to a wildcard channel name is refused', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const err = await sc.publish('sensors/+/temp', 1).then(() => null, (e) => e);
          assert.ok(err, 'invokePublish to sensors/+/temp must be rejected');
          assert.ok(err.name && err.name !== 'TimeoutError', `error name: ${err.name}: ${err.message}`);
        })(t);
      });

      test('publishing to the reserved $SYS, $presence and $sockmq namespaces is refused', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const mq = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(mq, '$SYS/#', {qos: 0});
          for (const ch of ['$SYS/broker/uptime', '$presence/x', '$sockmq/x']) {
            const err = await sc.publish(ch, 'spoof').then(() => null, (e) => e);
            assert.ok(err, `invokePublish ${ch} must be rejected`);
            assert.ok(err.name && err.name !== 'TimeoutError', `${ch}: ${err.name}: ${err.message}`);
          }
          assert.ok(!mq.inbox.items.some((m) => m.text === 'spoof'), 'no spoofed message reached MQTT');
          assert.equal(sc.state, 'open');
        })(t);
      });

      test('fan-out: 100 sockets on one channel each get one MQTT message once', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const N = 100;
          const clients = await Promise.all(Array.from({length: N}, () => connectSC(v, srv, cleanup)));
          const subs = clients.map((c) => c.subscribe('fanout/all'));
          await Promise.all(subs.map((s) => s.subscribed(10000)));
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttPublish(dev, 'fanout/all', '{"n":1}');
          const got = await Promise.all(subs.map((s) => s.next(undefined, 10000)));
          assert.deepEqual(got, Array.from({length: N}, () => ({n: 1})));
          // A second message is the next thing every socket gets: no duplicates.
          await mqttPublish(dev, 'fanout/all', '{"n":2}');
          const second = await Promise.all(subs.map((s) => s.next(undefined, 10000)));
          assert.deepEqual(second, Array.from({length: N}, () => ({n: 2})));
          assert.ok(subs.every((s) => s.messages.items.length === 2), 'exactly one delivery per socket and message');
        })(t);
      });

      test('unsubscribe stops delivery', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe('unsub/test');
          await sub.subscribed();
          const marker = sc.subscribe('unsub/marker');
          await marker.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttPublish(dev, 'unsub/test', '1');
          assert.equal(await sub.next(), 1);
          sc.socket.unsubscribe('unsub/test');
          // The unsubscribe is a transmit without ack; a later invoke on the
          // same socket is processed after it.
          await sc.publish('unsub/other', 'barrier');
          await mqttPublish(dev, 'unsub/test', '2');
          await mqttPublish(dev, 'unsub/marker', '"marker"');
          assert.equal(await marker.next(), 'marker');
          const late = sc.frames.items.find((f) => f.packet?.event === '#publish' && f.packet.data?.channel === 'unsub/test' &&
            f.packet.data.data === 2);
          assert.equal(late, undefined, 'a message after unsubscribe was delivered');
        })(t);
      });
    });
  }
});
