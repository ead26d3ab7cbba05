// Automatic re-subscribe after a server restart (scenario 6): the bridge
// closes sockets with 1001 on SIGTERM, the client backs off and reconnects by
// itself to the restarted process (same ports and data dir), re-subscribes,
// and a message published after the restart reaches the channel.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq} from './harness.mjs';
import {SC_VERSIONS, connectSC, connectMQTT, mqttSubscribe, mqttPublish} from './clients.mjs';

const T = {timeout: 30000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;

describe('SocketCluster bridge: reconnect and re-subscribe after a restart', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'restart', bridge: true}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: SIGTERM → close 1001 → automatic reconnect and re-subscribe`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        if (!srv.running) await srv.startAgain(); // a previous test failed half-way
        const sc = await connectSC(v, srv, cleanup);
        const sub = sc.subscribe('sensors/room1');
        await sub.subscribed();
        const dev1 = await connectMQTT(srv.mqttUrl, cleanup);
        await mqttPublish(dev1, 'sensors/room1', '"before"');
        assert.equal(await sub.next(), 'before');
        const id1 = sc.id;

        const exit = await srv.stop();
        assert.equal(exit.code, 0, `sockmq exit after SIGTERM: ${JSON.stringify(exit)}`);
        const closed = await sc.events.next((e) => e.type === 'disconnect' || e.type === 'close', 5000, 'close');
        assert.equal(closed.code, 1001, `close code on shutdown: ${JSON.stringify(closed)}`);
        assert.notEqual(sub.channel.state, 'subscribed', 'channel pending while disconnected');

        const restartedAt = Date.now();
        await srv.startAgain();
        await sc.connected(10000);
        await sub.subscribed(5000);
        t.diagnostic(`reconnected and re-subscribed ${Date.now() - restartedAt}ms after the restart`);
        assert.notEqual(sc.id, id1);
        assert.equal(sub.channel.state, 'subscribed');

        const dev2 = await connectMQTT(srv.mqttUrl, cleanup);
        await mqttPublish(dev2, 'sensors/room1', '"after"');
        assert.equal(await sub.next(), 'after');
        // Exactly one delivery (no duplicate subscription after re-subscribe):
        // the next message is the next thing the channel gets.
        await mqttPublish(dev2, 'sensors/room1', '"after2"');
        assert.equal(await sub.next(), 'after2');
      })(t);
    });
  }
});

describe('SocketCluster bridge: a login token survives a restart', () => {
  let srv;
  const USERS = {alice: 'alice-pw', device: 'device-pw'};
  before(async () => {
    srv = await Sockmq.start({name: 'restart-auth', bridge: true, users: USERS, allowAnonymous: false});
  });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: after the restart the client reconnects authenticated with its stored token and re-subscribes`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        if (!srv.running) await srv.startAgain();
        const sc = await connectSC(v, srv, cleanup);
        await sc.invoke('login', {username: 'alice', password: USERS.alice});
        await sc.events.next((e) => e.type === 'authenticate', 3000, 'authenticate event');
        const sub = sc.subscribe('sensors/room1');
        await sub.subscribed();

        await srv.restart();
        const ev = await sc.connected(10000);
        assert.equal(ev.isAuthenticated, true, `handshake after the restart: ${JSON.stringify(ev)}`);
        assert.equal(sc.authState, 'authenticated');
        // Anonymous sockets may not subscribe here, so this proves the identity.
        await sub.subscribed(5000);
        const dev = await connectMQTT(srv.mqttUrl, cleanup, {username: 'device', password: USERS.device});
        await mqttPublish(dev, 'sensors/room1', '"after restart"');
        assert.equal(await sub.next(), 'after restart');
      })(t);
    });
  }
});

describe('SC → offline MQTT device with a persistent session', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'offline-device', bridge: true}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: invokePublish while the device is offline is queued (QoS 1) and delivered on reconnect, also across a restart`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        const clientId = `device-${v}-${Date.now()}`;
        const topic = `cmd${v}/dev1`;
        const session = {protocolVersion: 4, clientId, clean: false};
        const dev = await connectMQTT(srv.mqttUrl, cleanup, session);
        await mqttSubscribe(dev, topic, {qos: 1});
        await dev.endAsync();

        const sc = await connectSC(v, srv, cleanup);
        await sc.publish(topic, {cmd: 'on'});
        const again = await connectMQTT(srv.mqttUrl, cleanup, session);
        const m1 = await again.inbox.next((x) => x.topic === topic);
        assert.deepEqual(JSON.parse(m1.text), {cmd: 'on'});
        assert.equal(m1.packet.qos, 1);
        await again.endAsync();

        await sc.publish(topic, {cmd: 'off'});
        await srv.restart(); // the queued message is in the store
        const afterRestart = await connectMQTT(srv.mqttUrl, cleanup, session);
        const m2 = await afterRestart.inbox.next((x) => x.topic === topic);
        assert.deepEqual(JSON.parse(m2.text), {cmd: 'off'});
        // Clean up the session.
        await afterRestart.endAsync();
        const cleaner = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 4, clientId, clean: true});
        await cleaner.endAsync();
      })(t);
    });
  }
});
