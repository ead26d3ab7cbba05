// Login limits and token revocation seen by the stock clients
// (socketcluster-client 20.0.2 and 14.3.2): anonymous sockets must log in
// within bridge.login_timeout (close 4501, no reconnect loop), too many
// failed logins close the socket (4502, no reconnect loop), and a token
// revoked by logout or by a password change makes the client drop it
// (#removeAuthToken).

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {promisify} from 'node:util';
import {Sockmq, waitFor, sockmqBin} from './harness.mjs';
import {SC_VERSIONS, connectSC} from './clients.mjs';

const T = {timeout: 20000};
const label = (v) => `socketcluster-client ${v === '20' ? '20.0.2' : '14.3.2'}`;
const USERS = {alice: 'alice-pw', carol: 'carol-pw'};

/** A token store for authEngine (v20: promises, v14: callbacks). */
function tokenStore(version, initial) {
  const store = {token: initial};
  store.engine = version === '20' ? {
    saveToken: async (name, token) => { store.token = token; return token; },
    removeToken: async () => { const old = store.token; store.token = null; return old; },
    loadToken: async () => store.token,
  } : {
    saveToken: (name, token, options, cb) => { store.token = token; cb && cb(null, token); },
    removeToken: (name, cb) => { const old = store.token; store.token = null; cb && cb(null, old); },
    loadToken: (name, cb) => cb(null, store.token),
  };
  return store;
}

async function loginToken(sc, user, password) {
  await sc.invoke('login', {username: user, password});
  const f = await sc.frames.next((x) => x.packet?.event === '#setAuthToken', 3000, '#setAuthToken');
  return f.packet.data.token;
}

/** Waits for the close event and checks that the client will not reconnect. */
async function closedForGood(sc, code, what) {
  const ev = await sc.events.next((e) => e.type === 'close', 5000, `close (${what})`);
  assert.equal(ev.code, code, `${what}: close ${JSON.stringify(ev)}`);
  // socketcluster-client decides right after emitting close: codes 4500 and
  // above (and 1000) schedule no reconnect.
  await new Promise((r) => setImmediate(r));
  assert.equal(sc.socket.pendingReconnect, false, `${what}: the client scheduled a reconnect`);
  assert.equal(sc.state, 'closed', `${what}: state`);
  // Both clients then report a SocketProtocolError with the code (14.3.2
  // from a timer; it would throw if no listener were left).
  const err = await sc.events.next((e) => e.type === 'error', 3000, `SocketProtocolError (${what})`);
  assert.equal(err.error?.code, code, `${what}: error ${err.error?.name}: ${err.error?.message}`);
  return ev;
}

describe('SocketCluster bridge: login limits and token revocation', () => {
  let srv;
  before(async () => {
    srv = await Sockmq.start({
      name: 'auth-limits', bridge: true, users: USERS, allowAnonymous: false,
      extraYaml: 'bridge:\n  login_timeout: 1s',
    });
  });
  after(async () => { await srv?.close(); });

  let carolPassword = USERS.carol;

  for (const v of SC_VERSIONS) {
    describe(label(v), () => {
      test('an anonymous socket is closed with 4501 after login_timeout and the client does not reconnect', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const start = Date.now();
          const sc = await connectSC(v, srv, cleanup);
          const ev = await closedForGood(sc, 4501, 'login timeout');
          assert.ok(Date.now() - start >= 900, `closed after ${Date.now() - start}ms, before the 1s login_timeout`);
          t.diagnostic(`close ${ev.code}: ${ev.reason}`);
        })(t);
      });

      test('logout revokes the token: another socket using it gets #removeAuthToken, a new one is refused', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const a = await connectSC(v, srv, cleanup);
          const token = await loginToken(a, 'alice', USERS.alice);
          const twin = tokenStore(v, token);
          const b = await connectSC(v, srv, cleanup, {authEngine: twin.engine});
          assert.equal(b.events.items.find((e) => e.type === 'connect').isAuthenticated, true, 'token accepted before logout');
          await a.invoke('logout');
          await b.frames.next((f) => f.packet?.event === '#removeAuthToken', 3000, '#removeAuthToken on the other socket');
          await waitFor(() => b.authState === 'unauthenticated' && twin.token === null, {what: 'the other client dropped the token'});

          const late = tokenStore(v, token);
          const c = await connectSC(v, srv, cleanup, {authEngine: late.engine});
          const ev = c.events.items.find((e) => e.type === 'connect');
          assert.equal(ev.isAuthenticated, false, JSON.stringify(ev));
          assert.equal(ev.authError?.name, 'AuthTokenInvalidError', JSON.stringify(ev.authError));
          await waitFor(() => late.token === null, {what: 'a new client dropped the revoked token'});
          t.diagnostic(`authError: ${ev.authError.message}`);
        })(t);
      });

      test('a password change revokes the tokens of live sockets (#removeAuthToken)', T, async (t) => {
        await srv.guard(async (_t, cleanup) => {
          const sc = await connectSC(v, srv, cleanup);
          await loginToken(sc, 'carol', carolPassword);
          carolPassword = `carol-pw-${Date.now()}`;
          await promisify(execFile)(sockmqBin, ['passwd', '-b', srv.passwordFile, 'carol', carolPassword], {timeout: 10000});
          srv.hup();
          await sc.frames.next((f) => f.packet?.event === '#removeAuthToken', 5000, '#removeAuthToken after the password change');
          await waitFor(() => sc.authState === 'unauthenticated', {what: 'authState unauthenticated'});
        })(t);
      });
    });
  }
});

describe('SocketCluster bridge: bridge.max_failed_logins', () => {
  // A server of its own: the failures of 127.0.0.1 add up across both
  // clients (growing answer delays), past the other suite's login_timeout.
  let srv;
  before(async () => {
    srv = await Sockmq.start({
      name: 'max-failed-logins', bridge: true, users: USERS, allowAnonymous: false,
      extraYaml: 'bridge:\n  max_failed_logins: 3',
    });
  });
  after(async () => { await srv?.close(); });

  for (const v of SC_VERSIONS) {
    test(`${label(v)}: the third wrong password closes the socket with 4502 and the client does not reconnect`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        const sc = await connectSC(v, srv, cleanup);
        for (let i = 1; i <= 3; i++) {
          const err = await sc.invoke('login', {username: 'alice', password: `guess-${i}`}).then(() => null, (e) => e);
          assert.equal(err?.name, 'LoginError', `failure ${i}: ${err?.name}: ${err?.message}`);
        }
        const ev = await closedForGood(sc, 4502, 'too many failed logins');
        t.diagnostic(`close ${ev.code}: ${ev.reason}`);
      })(t);
    });
  }
});
