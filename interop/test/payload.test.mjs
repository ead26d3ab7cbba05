// Payload mapping between SocketCluster data and MQTT payloads (scenario 3):
//
//   SC → MQTT                          MQTT payload          content type               format indicator
//   string "42"                        42                    text/plain                 1
//   object {a:1}                       {"a":1}               application/json
//   Buffer / {base64:true,data}        the raw bytes         application/octet-stream   (not 1)
//
//   MQTT → SC
//   JSON, no content type              the parsed value
//   UTF-8 text that is not JSON        a string
//   bytes that are not UTF-8           {base64:true, data}
//
// and SC → SC through the broker keeps the SC type (the string "42" stays a
// string, binary stays {base64:true,data}).

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq} from './harness.mjs';
import {SC_VERSIONS, connectSC, connectMQTT, mqttSubscribe, mqttPublish} from './clients.mjs';

const T = {timeout: 20000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;

const BIN = Buffer.from([0x01, 0x02, 0x03, 0xff]);
const BIN_B64 = BIN.toString('base64'); // AQID/w==

// [name, SC data to publish, expected MQTT payload bytes, content type, format indicator, what another SC client gets]
const SC_TO_MQTT = [
  ['string "42"', '42', Buffer.from('42'), 'text/plain', true, '42'],
  ['string that looks like JSON', '{"a":1}', Buffer.from('{"a":1}'), 'text/plain', true, '{"a":1}'],
  ['UTF-8 string', 'grüße ✓', Buffer.from('grüße ✓'), 'text/plain', true, 'grüße ✓'],
  ['object {a:1}', {a: 1}, Buffer.from('{"a":1}'), 'application/json', undefined, {a: 1}],
  ['array', [1, 'x', null], Buffer.from('[1,"x",null]'), 'application/json', undefined, [1, 'x', null]],
  ['number 42', 42, Buffer.from('42'), 'application/json', undefined, 42],
  ['boolean', true, Buffer.from('true'), 'application/json', undefined, true],
  ['null', null, Buffer.from('null'), 'application/json', undefined, null],
  ['empty string', '', Buffer.alloc(0), 'text/plain', true, ''],
  ['Buffer', BIN, BIN, 'application/octet-stream', false, {base64: true, data: BIN_B64}],
  ['{base64:true,data}', {base64: true, data: BIN_B64}, BIN, 'application/octet-stream', false, {base64: true, data: BIN_B64}],
  ['Buffer holding JSON-looking bytes', Buffer.from('{"a":1}'), Buffer.from('{"a":1}'), 'application/octet-stream', false,
    {base64: true, data: Buffer.from('{"a":1}').toString('base64')}],
];

// [name, MQTT payload, MQTT 5 publish properties, what the SC client gets]
const MQTT_TO_SC = [
  ['JSON object, no content type', Buffer.from('{"t":21.5,"ok":true}'), undefined, {t: 21.5, ok: true}],
  ['JSON array', Buffer.from('[1,2,3]'), undefined, [1, 2, 3]],
  ['JSON number', Buffer.from('42'), undefined, 42],
  ['JSON string', Buffer.from('"quoted"'), undefined, 'quoted'],
  ['JSON with surrounding white space', Buffer.from(' {"a":1}\n'), undefined, {a: 1}],
  ['UTF-8 text, not JSON', Buffer.from('hello wörld'), undefined, 'hello wörld'],
  ['text that starts like JSON but is not', Buffer.from('{not json'), undefined, '{not json'],
  ['non-UTF-8 bytes', Buffer.from([0xff, 0xfe, 0x00, 0x01]), undefined, {base64: true, data: '//4AAQ=='}],
  ['text/plain content type keeps "42" a string', Buffer.from('42'), {contentType: 'text/plain', payloadFormatIndicator: true}, '42'],
  ['empty payload', Buffer.alloc(0), undefined, ''],
  // Content types beyond the basic table (the bridge's documented rules).
  ['text/plain with parameters', Buffer.from('42'), {contentType: 'text/plain; charset=utf-8'}, '42'],
  ['application/octet-stream keeps text bytes binary', Buffer.from('abc'), {contentType: 'application/octet-stream'},
    {base64: true, data: 'YWJj'}],
  ['+json media type', Buffer.from('{"a":1}'), {contentType: 'application/vnd.example+json'}, {a: 1}],
  ['application/json that is not JSON falls back to a string', Buffer.from('not json'), {contentType: 'application/json'},
    'not json'],
];

describe('SocketCluster bridge: payload mapping', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'payload', bridge: true}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test('SC → MQTT 5 (payload, content type, payload format indicator) and SC → SC', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const mq = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 5});
          await mqttSubscribe(mq, 'pay/#', {qos: 1});
          const pub = await connectSC(v, srv, cleanup);
          const peer = await connectSC(v, srv, cleanup);
          const failures = [];
          for (const [i, [name, data, bytes, ctype, pfi, scExpected]] of SC_TO_MQTT.entries()) {
            const topic = `pay/sc${v}/${i}`;
            const sub = peer.subscribe(topic);
            await sub.subscribed();
            await pub.publish(topic, data);
            const m = await mq.inbox.next((x) => x.topic === topic, 5000);
            const got = await sub.next(undefined, 5000);
            const problems = [];
            if (!m.payload.equals(bytes)) problems.push(`MQTT payload ${m.payload.toString('hex')} want ${bytes.toString('hex')}`);
            if (m.properties.contentType !== ctype) problems.push(`content type ${m.properties.contentType} want ${ctype}`);
            if (pfi === true && m.properties.payloadFormatIndicator !== true) {
              problems.push(`payload format indicator ${m.properties.payloadFormatIndicator} want 1`);
            }
            if (pfi === false && m.properties.payloadFormatIndicator === true) problems.push('payload format indicator 1 on binary data');
            try { assert.deepStrictEqual(got, scExpected); } catch {
              problems.push(`SC peer got ${JSON.stringify(got)} (${typeof got}) want ${JSON.stringify(scExpected)} (${typeof scExpected})`);
            }
            if (problems.length) failures.push(`${name}: ${problems.join('; ')}`);
            sub.channel.unsubscribe();
          }
          assert.deepEqual(failures, [], failures.join('\n'));
        })(t);
      });

      test('MQTT → SC (JSON, text, binary)', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe(`mqtt2sc${v}/#`);
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup, {protocolVersion: 5});
          const failures = [];
          for (const [i, [name, payload, properties, expected]] of MQTT_TO_SC.entries()) {
            await mqttPublish(dev, `mqtt2sc${v}/${i}`, payload, properties ? {properties} : {});
            // A wildcard channel: the value comes wrapped as {topic, data}.
            const {topic, data: got} = await sub.next(undefined, 5000);
            assert.equal(topic, `mqtt2sc${v}/${i}`);
            try { assert.deepStrictEqual(got, expected); } catch {
              failures.push(`${name}: got ${JSON.stringify(got)} (${typeof got}) want ${JSON.stringify(expected)} (${typeof expected})`);
            }
          }
          assert.deepEqual(failures, [], failures.join('\n'));
        })(t);
      });
    });
  }
});
