// Last wills and presence seen by socketcluster-client (20.0.2 and 14.3.2)
// and by an MQTT.js client, against a real sockmq process.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq, waitFor} from './harness.mjs';
import {SC_VERSIONS, connectSC, connectMQTT, mqttSubscribe, mqttPublish, uniq} from './clients.mjs';

const T = {timeout: 20000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;

/**
 * Drops the client's TCP connection without a WebSocket close (a crash),
 * and waits until the client itself has noticed (its "Socket hung up"
 * error must not outlive the test).
 */
async function dropTransport(sc) {
  const ws = sc.socket.transport && sc.socket.transport.socket;
  assert.ok(ws && typeof ws.terminate === 'function', 'the client transport exposes its ws socket');
  sc.socket.options.autoReconnect = false;
  ws.terminate();
  // Both clients report an abnormal close as a SocketProtocolError "Socket
  // hung up"; 14.3.2 emits it on a later tick and throws if nobody listens.
  await sc.events.next((e) => e.type === 'error' && e.error && e.error.name === 'SocketProtocolError', 5000,
    'the client to report its connection drop');
}

describe('Last wills and presence', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'lwt-presence', bridge: true}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test('presence: an SC client lists MQTT and SC sessions, learns its own id, and watches the channel', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const devID = uniq('dev');
          await connectMQTT(srv.mqttUrl, cleanup, {clientId: devID});
          const sc = await connectSC(v, srv, cleanup);
          assert.equal(await sc.invoke('getSessionId'), sc.id, 'getSessionId repeats the handshake id');
          // Presence follows the CONNACK asynchronously: poll (at waitFor's
          // pace, well within bridge.invoke_rate).
          const list = await waitFor(async () => {
            const l = await sc.invoke('presence');
            return l.some((s) => s.id === devID) && l.some((s) => s.id === sc.id) && l;
          }, {what: 'the device and the socket in presence'});
          const dev = list.find((s) => s.id === devID);
          const me = list.find((s) => s.id === sc.id);
          assert.ok(dev && me, `presence list ${JSON.stringify(list)}`);
          assert.equal(dev.protocol, 'mqtt');
          assert.equal(me.protocol, 'socketcluster');
          assert.equal(me.transport, 'websocket');

          // The same list as a channel (retained documents), then live updates.
          const ch = sc.subscribe('$presence/clients/+');
          await ch.subscribed();
          // A wildcard channel: each document comes as {topic, data}.
          const {topic: docTopic, data: doc} = await ch.next((x) => x.data && x.data.id === devID);
          assert.equal(docTopic, `$presence/clients/${devID}`);
          assert.equal(doc.protocol, 'mqtt');
          const events = sc.subscribe('$presence/disconnected');
          await events.subscribed();
          const other = await connectSC(v, srv, cleanup);
          const otherID = other.id;
          await ch.next((x) => x.data && x.data.id === otherID);
          other.disconnect();
          const ev = await events.next((e) => e && e.id === otherID);
          assert.equal(ev.reason, 'clean');
          assert.equal(ev.protocol, 'socketcluster');
        })(t);
      });

      test('presence: an MQTT client sees an SC socket join and leave', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const viewer = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(viewer, '$presence/+', {qos: 1});
          const sc = await connectSC(v, srv, cleanup);
          const id = sc.id;
          const joined = await viewer.inbox.next((m) => m.topic === '$presence/connected' && JSON.parse(m.text).id === id);
          assert.equal(JSON.parse(joined.text).protocol, 'socketcluster');
          await dropTransport(sc);
          const left = await viewer.inbox.next((m) => m.topic === '$presence/disconnected' && JSON.parse(m.text).id === id);
          assert.equal(JSON.parse(left.text).reason, 'will', 'an abrupt end is not clean');
        })(t);
      });

      test('will: set by an SC client, published to MQTT and SC subscribers when its connection dies', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const topic = `status/${uniq('w')}`;
          const mq = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(mq, 'status/#', {qos: 1});
          const watcher = await connectSC(v, srv, cleanup);
          const wsub = watcher.subscribe(topic);
          await wsub.subscribed();

          const dying = await connectSC(v, srv, cleanup);
          assert.equal(await dying.invoke('setWill', {channel: topic, data: 'offline', retain: true}), undefined);
          await dropTransport(dying);

          const m = await mq.inbox.next((x) => x.topic === topic);
          assert.equal(m.text, 'offline');
          assert.equal(m.properties.contentType, 'text/plain');
          assert.equal(await wsub.next(), 'offline', 'the SC subscriber gets the will as sent');
          // Retained, as asked: a late MQTT subscriber gets it.
          const late = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(late, topic, {qos: 1});
          const r = await late.inbox.next((x) => x.topic === topic);
          assert.equal(r.text, 'offline');
          assert.equal(r.packet.retain, true);
          await mqttPublish(late, topic, '', {retain: true}); // clear it
        })(t);
      });

      test('will: not published after a clean disconnect(), nor after clearWill', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const topic = `status/${uniq('w')}`;
          const mq = await connectMQTT(srv.mqttUrl, cleanup);
          await mqttSubscribe(mq, `${topic}/#`, {qos: 1});
          const polite = await connectSC(v, srv, cleanup);
          await polite.invoke('setWill', {channel: `${topic}/polite`, data: 'x'});
          const cleared = await connectSC(v, srv, cleanup);
          await cleared.invoke('setWill', {channel: `${topic}/cleared`, data: 'x'});
          await cleared.invoke('clearWill', {channel: `${topic}/cleared`});
          polite.disconnect();
          await dropTransport(cleared);
          // Wait until both sockets are gone, then prove nothing came: a
          // sentinel published afterwards is the first message.
          const viewer = await connectSC(v, srv, cleanup);
          await waitFor(async () => {
            const ids = (await viewer.invoke('presence')).map((s) => s.id);
            return !ids.includes(polite.id) && !ids.includes(cleared.id);
          }, {what: 'both sockets to leave presence'});
          await mqttPublish(mq, `${topic}/sentinel`, 'sentinel');
          const first = await mq.inbox.next((x) => x.topic.startsWith(topic));
          assert.equal(first.topic, `${topic}/sentinel`, `a will was published: ${first.topic} ${first.text}`);
        })(t);
      });

      test('will: a forbidden or malformed will is refused with a named error', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          await assert.rejects(sc.invoke('setWill', {channel: '$presence/clients/x', data: 'x'}), (e) => e.name === 'InvalidArgumentsError' || e.name === 'ForbiddenError');
          await assert.rejects(sc.invoke('setWill', {channel: 'a/+', data: 'x'}), (e) => e.name === 'InvalidArgumentsError');
          await assert.rejects(sc.invoke('setWill', {data: 'x'}), (e) => e.name === 'InvalidArgumentsError');
        })(t);
      });
    });
  }
});
