// Authentication and authorization through the bridge (scenarios 4 and 5):
// login over SC, token reuse on reconnect, wrong passwords, anonymous
// access refused, and mosquitto-syntax ACLs applied to SC subscribe/publish.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Sockmq, waitFor} from './harness.mjs';
import {SC_VERSIONS, connectSC, connectMQTT, mqttSubscribe, mqttPublish, uniq} from './clients.mjs';
import * as mqtt from 'mqtt';

const T = {timeout: 20000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;
const GENERIC = new Set(['Error', 'TimeoutError', 'BadConnectionError', '']);

function assertClearError(err, what) {
  assert.ok(err instanceof Error || (err && typeof err === 'object'), `${what}: expected an error, got ${err}`);
  assert.ok(typeof err.name === 'string' && !GENERIC.has(err.name),
    `${what}: want a specific error name from the server, got ${err.name}: ${err.message}`);
  assert.ok(typeof err.message === 'string' && err.message.length > 0, `${what}: error message is empty`);
}

function decodeJwtPayload(jwt) {
  const [, payload] = jwt.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

const USERS = {alice: 'alice-pw', bob: 'bob-pw', device: 'device-pw'};

/** Logs sc in as alice and waits until the client counts as authenticated. */
async function loginAlice(sc) {
  await sc.invoke('login', {username: 'alice', password: USERS.alice});
  await sc.events.next((e) => e.type === 'authenticate', 3000, 'authenticate event');
}

/** Logs sc in as alice and returns the token from #setAuthToken. */
async function loginToken(sc) {
  await sc.invoke('login', {username: 'alice', password: USERS.alice});
  const f = await sc.frames.next((x) => x.packet?.event === '#setAuthToken', 3000, '#setAuthToken');
  return f.packet.data.token;
}

describe('SocketCluster bridge: login and tokens (allow_anonymous: false)', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'auth', bridge: true, users: USERS, allowAnonymous: false}); });
  after(async () => { await srv?.close(); });

  test('MQTT.js: good password connects, wrong password is refused (CONNACK 0x86)', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const ok = await connectMQTT(srv.mqttUrl, cleanup, {username: 'alice', password: USERS.alice});
      assert.ok(ok.connected);
      const err = await mqtt.connectAsync(srv.mqttUrl, {
        protocolVersion: 5, username: 'alice', password: 'nope', reconnectPeriod: 0, connectTimeout: 5000,
      }).then((c) => { c.end(true); return null; }, (e) => e);
      assert.ok(err, 'connect with a wrong password must fail');
      assert.equal(err.code, 134, `reason code: ${err.code} ${err.message}`);
      const anon = await mqtt.connectAsync(srv.mqttUrl, {protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000})
        .then((c) => { c.end(true); return null; }, (e) => e);
      assert.ok(anon, 'anonymous MQTT connect must fail');
    })(t);
  });

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test('unauthenticated subscribe and publish are refused', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          assert.equal(sc.authState, 'unauthenticated');
          const sub = sc.subscribe('sensors/room1');
          const err = await sub.failed();
          assertClearError(err, 'unauthenticated subscribe');
          assert.notEqual(sub.channel.state, 'subscribed');
          const perr = await sc.publish('sensors/room1', 1).then(() => null, (e) => e);
          assertClearError(perr, 'unauthenticated invokePublish');
          assert.equal(sc.state, 'open', 'a refused action keeps the socket open');
        })(t);
      });

      test('wrong password and unknown user: invoke("login") rejects with the same clear error', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const wrong = await sc.invoke('login', {username: 'alice', password: 'wrong'}).then(() => null, (e) => e);
          assertClearError(wrong, 'login with a wrong password');
          const unknown = await sc.invoke('login', {username: 'mallory', password: 'x'}).then(() => null, (e) => e);
          assertClearError(unknown, 'login of an unknown user');
          assert.equal(unknown.name, wrong.name, 'unknown user and wrong password are indistinguishable');
          assert.equal(unknown.message, wrong.message, 'unknown user and wrong password are indistinguishable');
          assert.equal(sc.authState, 'unauthenticated');
          assert.ok(!sc.frames.items.some((f) => f.packet?.event === '#setAuthToken'), 'no token after a failed login');
          t.diagnostic(`login error: ${wrong.name}: ${wrong.message}`);
        })(t);
      });

      test('login → #setAuthToken → authenticated; disconnect/connect reuses the token', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const res = await sc.invoke('login', {username: 'alice', password: USERS.alice});
          // As with socketcluster-server apps that await setAuthToken before
          // answering: authenticated as soon as the login call resolves.
          assert.equal(sc.authState, 'authenticated', 'authState right after login resolved');
          t.diagnostic(`login reply: ${JSON.stringify(res)}`);
          const tok = await sc.frames.next((f) => f.packet?.event === '#setAuthToken', 3000, '#setAuthToken');
          const jwt = tok.packet.data?.token;
          assert.equal(typeof jwt, 'string', `#setAuthToken frame ${tok.raw}`);
          assert.equal(jwt.split('.').length, 3, 'token is a JWT');
          assert.equal(decodeJwtPayload(jwt).username, 'alice');
          await sc.events.next((e) => e.type === 'authenticate', 3000, 'authenticate event');
          assert.equal(sc.authState, 'authenticated');
          assert.equal(sc.authToken?.username, 'alice');

          // Authenticated: subscribe works and MQTT traffic arrives.
          const sub = sc.subscribe('sensors/room1');
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup, {username: 'device', password: USERS.device});
          await mqttPublish(dev, 'sensors/room1', '1');
          assert.equal(await sub.next(), 1);

          // Reconnect: the stored token goes in #handshake, no new login.
          const id1 = sc.id;
          sc.disconnect();
          await sc.events.next((e) => e.type === 'disconnect' || e.type === 'close', 3000, 'disconnect');
          sc.connect();
          const ev = await sc.connected();
          assert.equal(ev.isAuthenticated, true, `handshake reply with the stored token: ${JSON.stringify(ev)}`);
          assert.ok(!ev.authError, `no authError: ${JSON.stringify(ev.authError)}`);
          assert.notEqual(sc.id, id1, 'a new socket id');
          assert.equal(sc.authState, 'authenticated');
          assert.equal(sc.authToken?.username, 'alice');
          // The channel is re-subscribed automatically with the token's identity.
          await sub.subscribed();
          await mqttPublish(dev, 'sensors/room1', '2');
          assert.equal(await sub.next(), 2);
        })(t);
      });

      test('subscribe with waitForAuth is sent only after login, then delivers', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const sub = sc.subscribe('sensors/room1', {waitForAuth: true});
          // A round trip on the same socket (refused here: anonymous sockets
          // may only log in, but the refusal is an answer): a subscribe sent
          // before it would have been answered before it.
          await assert.rejects(sc.invoke('getSessionId'), (e) => e.name === 'AuthError');
          assert.equal(sub.events.items.filter((e) => e.type === 'subscribe' || e.type === 'subscribeFail').length, 0,
            'a waitForAuth subscription was sent before login');
          assert.equal(sub.channel.state, 'pending');
          await sc.invoke('login', {username: 'bob', password: USERS.bob});
          await sub.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup, {username: 'device', password: USERS.device});
          await mqttPublish(dev, 'sensors/room1', '"for bob"');
          assert.equal(await sub.next(), 'for bob');
        })(t);
      });

      test('deauthenticate: the server drops the identity and kicks the socket out of its channels', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          await loginAlice(sc);
          const sub = sc.subscribe('sensors/room1');
          await sub.subscribed();
          await sc.deauthenticate();
          assert.equal(sc.authState, 'unauthenticated');
          const kick = await sc.frames.next((f) => f.packet?.event === '#kickOut', 3000, '#kickOut');
          assert.equal(kick.packet.data.channel, 'sensors/room1');
          await sc.events.next((e) => e.type === 'kickOut', 3000, 'kickOut event');
          await waitFor(() => sub.channel.state === 'unsubscribed', {what: 'channel unsubscribed'});
          // Anonymous again: subscribing is refused.
          const err = await sc.subscribe('sensors/room2').failed();
          assertClearError(err, 'subscribe after deauthenticate');
        })(t);
      });

      test('logout procedure: #removeAuthToken, the client forgets its token', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          await loginAlice(sc);
          await sc.invoke('logout');
          await sc.frames.next((f) => f.packet?.event === '#removeAuthToken', 3000, '#removeAuthToken');
          await waitFor(() => sc.authState === 'unauthenticated', {what: 'authState unauthenticated'});
          // The next connection carries no token.
          sc.disconnect();
          sc.connect();
          const ev = await sc.connected();
          assert.equal(ev.isAuthenticated, false);
        })(t);
      });
    });
  }

  test('socketcluster-client 20.0.2: a tampered token is refused at handshake (authError, #removeAuthToken)', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const a = await connectSC('20', srv, cleanup);
      const token = await loginToken(a);
      const [h, , s] = token.split('.');
      const forgedPayload = {...decodeJwtPayload(token), username: 'bob'};
      const forged = `${h}.${Buffer.from(JSON.stringify(forgedPayload)).toString('base64url')}.${s}`;
      let stored = forged;
      const authEngine = {
        saveToken: async (name, token) => { stored = token; return token; },
        removeToken: async () => { const old = stored; stored = null; return old; },
        loadToken: async () => stored,
      };
      const b = await connectSC('20', srv, cleanup, {authEngine});
      const ev = b.events.items.find((e) => e.type === 'connect');
      assert.equal(ev.isAuthenticated, false, `handshake reply: ${JSON.stringify(ev)}`);
      assert.ok(ev.authError, 'authError in the handshake reply');
      assertClearError(ev.authError, 'authError');
      await b.frames.next((f) => f.packet?.event === '#removeAuthToken', 3000, '#removeAuthToken');
      await b.events.next((e) => e.type === 'removeAuthToken' || e.type === 'deauthenticate', 3000);
      assert.equal(b.authState, 'unauthenticated');
      assert.equal(stored, null, 'the client dropped the bad token');
    })(t);
  });
});

describe('SocketCluster bridge: ACL (mosquitto syntax)', () => {
  let srv;
  const ACL = [
    'user alice',
    'topic read sensors/#',
    'topic readwrite alice/#',
    '',
    'user device',
    'topic write sensors/#',
    'topic read alice/#',
    '',
  ].join('\n');
  before(async () => { srv = await Sockmq.start({name: 'acl', bridge: true, users: USERS, acl: ACL, allowAnonymous: false}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test('forbidden subscribe → subscribeFail; read-only publish rejected; granted ones work', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          await loginAlice(sc);

          const secret = sc.subscribe('secret/x');
          const err = await secret.failed();
          assertClearError(err, 'subscribe secret/x');
          t.diagnostic(`subscribeFail: ${err.name}: ${err.message}`);
          // socket-level subscribeFail too
          const sev = await sc.events.next((e) => e.type === 'subscribeFail', 3000, 'socket subscribeFail');
          assert.equal(sev.channel, 'secret/x');
          assert.equal(sc.socket.isSubscribed('secret/x', true), false, 'channel removed, not retried');

          const perr = await sc.publish('sensors/x', {v: 1}).then(() => null, (e) => e);
          assertClearError(perr, 'invokePublish sensors/x (read-only)');
          t.diagnostic(`publish refused: ${perr.name}: ${perr.message}`);

          // Granted: read sensors/#, readwrite alice/#.
          const sensors = sc.subscribe('sensors/#');
          await sensors.subscribed();
          const dev = await connectMQTT(srv.mqttUrl, cleanup, {username: 'device', password: USERS.device});
          await mqttSubscribe(dev, 'alice/#', {qos: 1});
          await mqttPublish(dev, 'sensors/hall', '7');
          assert.deepEqual(await sensors.next(), {topic: 'sensors/hall', data: 7});
          await sc.publish(`alice/${uniq('x')}`, 'hello from alice');
          const m = await dev.inbox.next((x) => x.topic.startsWith('alice/'));
          assert.equal(m.text, 'hello from alice');
          assert.equal(sc.state, 'open');
        })(t);
      });

      test('anonymous SC client gets nothing when an ACL is set', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          const err = await sc.subscribe('sensors/#').failed();
          assertClearError(err, 'anonymous subscribe');
        })(t);
      });
    });
  }
});

describe('SocketCluster bridge: ACL reload (SIGHUP) revokes live subscriptions', () => {
  let srv;
  const ACL = 'user alice\ntopic read sensors/#\ntopic readwrite alice/#\n\nuser device\ntopic write sensors/#\n';
  before(async () => { srv = await Sockmq.start({name: 'acl-reload', bridge: true, users: USERS, acl: ACL, allowAnonymous: false}); });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: read permission removed → #kickOut on the channel, no more messages`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        await srv.setAcl(ACL);
        srv.hup();
        const sc = await connectSC(v, srv, cleanup);
        await loginAlice(sc);
        const sensors = sc.subscribe('sensors/#');
        const mine = sc.subscribe('alice/#');
        await sensors.subscribed();
        await mine.subscribed();
        const dev = await connectMQTT(srv.mqttUrl, cleanup, {username: 'device', password: USERS.device});
        await mqttPublish(dev, 'sensors/a', '1');
        assert.deepEqual(await sensors.next(), {topic: 'sensors/a', data: 1});

        await srv.setAcl('user alice\ntopic readwrite alice/#\n\nuser device\ntopic write sensors/#\n');
        srv.hup();
        const kick = await sc.frames.next((f) => f.packet?.event === '#kickOut', 5000, '#kickOut after SIGHUP');
        assert.equal(kick.packet.data.channel, 'sensors/#');
        t.diagnostic(`kickOut message: ${kick.packet.data.message}`);
        await waitFor(() => sensors.channel.state === 'unsubscribed', {what: 'sensors/# unsubscribed'});
        assert.equal(mine.channel.state, 'subscribed', 'alice/# is still readable');
        await mqttPublish(dev, 'sensors/a', '2');
        await sc.publish('alice/x', 'still here');
        assert.deepEqual(await mine.next(), {topic: 'alice/x', data: 'still here'});
        assert.ok(!sc.frames.items.some((f) => f.packet?.event === '#publish' && f.packet.data?.data?.data === 2),
          'no message on the revoked channel');
      })(t);
    });
  }
});

describe('SocketCluster bridge: token expiry (bridge.token_expiry: 1s)', () => {
  let srv;
  before(async () => {
    srv = await Sockmq.start({
      name: 'token-expiry', bridge: true, users: USERS, allowAnonymous: false,
      extraYaml: 'bridge:\n  token_expiry: 1s\n  ping_interval: 200ms\n  ping_timeout: 1s',
    });
  });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: an expired token deauthenticates the live socket (#removeAuthToken, #kickOut)`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        const sc = await connectSC(v, srv, cleanup);
        await loginAlice(sc);
        const exp = sc.authToken?.exp;
        assert.ok(Number.isInteger(exp), `token has exp: ${JSON.stringify(sc.authToken)}`);
        const sub = sc.subscribe('sensors/room1');
        await sub.subscribed();
        // Idle socket: the server notices the expiry on the next pong.
        await sc.frames.next((f) => f.packet?.event === '#removeAuthToken', 4000, '#removeAuthToken on expiry');
        assert.ok(Date.now() / 1000 >= exp, 'not before exp');
        const kick = await sc.frames.next((f) => f.packet?.event === '#kickOut', 2000, '#kickOut on expiry');
        assert.equal(kick.packet.data.channel, 'sensors/room1');
        await waitFor(() => sc.authState === 'unauthenticated', {what: 'authState unauthenticated'});
        assert.equal(sc.state, 'open', 'the socket stays open');
      })(t);
    });
  }

  test('socketcluster-client 20.0.2: handshake with an expired token → authError AuthTokenExpiredError', T, async (t) => {
    await srv.guard(async (_t, cleanup) => {
      const a = await connectSC('20', srv, cleanup);
      const jwt = await loginToken(a);
      const {exp} = decodeJwtPayload(jwt);
      a.close();
      await waitFor(() => Date.now() / 1000 >= exp + 0.05, {timeout: 3000, what: 'token expiry'});
      let stored = jwt;
      const authEngine = {
        saveToken: async (name, token) => { stored = token; return token; },
        removeToken: async () => { const old = stored; stored = null; return old; },
        loadToken: async () => stored,
      };
      const b = await connectSC('20', srv, cleanup, {authEngine});
      const ev = b.events.items.find((e) => e.type === 'connect');
      assert.equal(ev.isAuthenticated, false, JSON.stringify(ev));
      assert.equal(ev.authError?.name, 'AuthTokenExpiredError', JSON.stringify(ev.authError));
      await b.frames.next((f) => f.packet?.event === '#removeAuthToken', 3000, '#removeAuthToken');
      await waitFor(() => stored === null, {what: 'client dropped the expired token'});
    })(t);
  });
});
