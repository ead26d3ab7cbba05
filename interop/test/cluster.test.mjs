// Two sockmq nodes in one cluster (embedded nats-servers with routes):
// socketcluster-client 20.0.2 on node A and MQTT.js on node B share
// channels both ways, and a bridge token from node A logs in on node B.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq, freePort} from './harness.mjs';
import {connectSC, connectMQTT, mqttSubscribe, mqttPublish} from './clients.mjs';

const T = {timeout: 30000};
const AUTH_KEY = '0123456789abcdef0123456789abcdef';

describe('cluster: SocketCluster on node A, MQTT.js on node B', () => {
  let a, b;
  before(async () => {
    const routes = [await freePort(), await freePort()];
    const yaml = (node, port) => [
      `bridge:\n  auth_key: "${AUTH_KEY}"`,
      'cluster:',
      '  name: interop',
      `  node: ${node}`,
      '  embedded:',
      `    listen: "127.0.0.1:${port}"`,
      `    routes: [${routes.map((p) => `"nats://127.0.0.1:${p}"`).join(', ')}]`,
    ].join('\n');
    // Together: the nodes' JetStream needs both to elect its leaders.
    [a, b] = await Promise.all([
      Sockmq.start({name: 'cluster-a', bridge: true, startTimeout: 60000, extraYaml: yaml('a', routes[0])}),
      Sockmq.start({name: 'cluster-b', bridge: true, startTimeout: 60000, extraYaml: yaml('b', routes[1])}),
    ]);
  });
  after(async () => { await Promise.all([a?.close(), b?.close()]); });

  test('MQTT.js on B → SC channel on A, and SC on A → MQTT.js on B', T, async (t) => {
    await a.guard(async (_t, cleanup) => {
      const sc = await connectSC('20', a, cleanup);
      const sub = sc.subscribe('rooms/+/temp');
      await sub.subscribed();
      const dev = await connectMQTT(b.mqttUrl, cleanup);
      await mqttSubscribe(dev, 'rooms/#', {qos: 1});
      // The interest of node A reaches node B over NATS: poll until a
      // publish from B arrives on A.
      let got;
      for (let i = 0; i < 50 && got === undefined; i++) {
        await mqttPublish(dev, 'rooms/kitchen/temp', JSON.stringify({t: 21.5}));
        got = await sub.next(undefined, 200).catch(() => undefined);
      }
      assert.deepEqual(got, {topic: 'rooms/kitchen/temp', data: {t: 21.5}});
      await sc.publish('rooms/hall/temp', {t: 19});
      const m = await dev.inbox.next((x) => x.topic === 'rooms/hall/temp', 10000, 'SC publish from node A on node B');
      assert.deepEqual(JSON.parse(m.text), {t: 19});
    })(t);
  });

  test('a token signed on node A logs in on node B', T, async (t) => {
    await b.guard(async (_t, cleanup) => {
      const onA = await connectSC('20', a, cleanup);
      await onA.invoke('login', {username: 'alice', password: 'x'});
      const token = onA.socket.signedAuthToken;
      assert.ok(token, 'node A issued a token');
      const onB = await connectSC('20', b, cleanup, {authEngine: {
        saveToken: async (_name, tok) => tok, removeToken: async () => null, loadToken: async () => token,
      }});
      await onB.events.next((e) => e.type === 'authenticate', 5000, 'authenticate on node B with the token of node A');
      assert.equal(onB.authState, 'authenticated');
    })(t);
  });
});
