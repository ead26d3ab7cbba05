// MQTT.js 5 against sockmq: MQTT over TCP, and MQTT over WebSocket at /mqtt
// interoperating with MQTT over TCP (scenario 7).

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq} from './harness.mjs';
import {connectMQTT, mqttSubscribe, mqttPublish, uniq} from './clients.mjs';

const T = {timeout: 20000};

describe('MQTT.js over TCP and WebSocket', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'mqtt'}); });
  after(async () => { await srv?.close(); });

  test('TCP: publish to sensors/room1 reaches a sensors/# subscriber (MQTT 5 and 3.1.1)', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const sub5 = await connectMQTT(srv.mqttUrl, cleanup);
      const sub311 = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 4});
      await mqttSubscribe(sub5, 'sensors/#', {qos: 1});
      await mqttSubscribe(sub311, 'sensors/#', {qos: 1});
      const dev = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 4});
      await mqttPublish(dev, 'sensors/room1', '21.5');
      for (const sub of [sub5, sub311]) {
        const m = await sub.inbox.next((x) => x.topic === 'sensors/room1');
        assert.equal(m.text, '21.5');
        assert.equal(m.packet.qos, 1);
      }
    })(t);
  });

  test('WebSocket /mqtt → TCP and TCP → WebSocket /mqtt, MQTT 5 properties preserved', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const tcp = await connectMQTT(srv.mqttUrl, cleanup);
      const ws = await connectMQTT(srv.wsMqttUrl, cleanup);
      assert.ok(ws.connected, 'MQTT.js connected over ws://…/mqtt');
      await mqttSubscribe(tcp, 'ws/to/tcp/+', {qos: 1});
      await mqttSubscribe(ws, 'tcp/to/ws/#', {qos: 1});

      await mqttPublish(ws, 'ws/to/tcp/a', JSON.stringify({v: 1}), {
        properties: {contentType: 'application/json', payloadFormatIndicator: true},
      });
      const a = await tcp.inbox.next((x) => x.topic === 'ws/to/tcp/a');
      assert.deepEqual(JSON.parse(a.text), {v: 1});
      assert.equal(a.properties.contentType, 'application/json');
      assert.equal(a.properties.payloadFormatIndicator, true);

      const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80]);
      await mqttPublish(tcp, 'tcp/to/ws/b/c', bytes, {qos: 2});
      const b = await ws.inbox.next((x) => x.topic === 'tcp/to/ws/b/c');
      assert.deepEqual(b.payload, bytes);
    })(t);
  });

  // Regression: mochi's buildAck used to copy the PUBLISH's properties into
  // the PUBACK with reason code 0x01 (QoS granted, not a PUBACK code), which
  // MQTT.js rejects ("Invalid puback reason code").
  test('MQTT 5 QoS 1 PUBLISH with user properties is acknowledged and delivered', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const sub = await connectMQTT(srv.wsMqttUrl, cleanup);
      await mqttSubscribe(sub, 'userprops/#', {qos: 1});
      const pub = await connectMQTT(srv.mqttUrl, cleanup);
      await mqttPublish(pub, 'userprops/a', 'x', {properties: {userProperties: {k: 'v'}}});
      const m = await sub.inbox.next((x) => x.topic === 'userprops/a');
      assert.deepEqual({...m.properties.userProperties}, {k: 'v'}); // MQTT.js builds it without a prototype
    })(t);
  });

  test('WebSocket /mqtt with MQTT 3.1.1: retained message delivered on subscribe', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const topic = `retained/${uniq('r')}`;
      const dev = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 4});
      await mqttPublish(dev, topic, 'kept', {retain: true});
      const ws = await connectMQTT(srv.wsMqttUrl, cleanup, {protocolVersion: 4});
      await mqttSubscribe(ws, topic, {qos: 1});
      const m = await ws.inbox.next((x) => x.topic === topic);
      assert.equal(m.text, 'kept');
      assert.equal(m.packet.retain, true);
      // clear it
      await mqttPublish(dev, topic, '', {retain: true});
    })(t);
  });
});
