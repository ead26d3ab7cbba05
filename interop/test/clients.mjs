// Thin adapters over the real third-party clients, so that each scenario can
// run against socketcluster-client 20.0.2 (async-iterator API) and 14.3.2
// (callback/EventEmitter API) alike, plus MQTT.js helpers.
//
// Each adapter records:
//   frames  - every inbound WebSocket message as decoded JSON packets
//             ({packet, raw}); batched arrays are split, pings are skipped
//   events  - connect / disconnect / close / error / authenticate / ... as {type, ...}
// and each subscription records its channel messages and subscribe events.

import {createRequire} from 'node:module';
import * as mqtt from 'mqtt';
import sc20 from 'socketcluster-client';
import {Inbox, withTimeout} from './harness.mjs';

const require = createRequire(import.meta.url);
const sc14 = require('sc14'); // npm:socketcluster-client@14.3.2

export const SC_VERSIONS = ['20', '14'];
export const SC_PACKAGES = {'20': sc20, '14': sc14};

// Quick reconnects for the tests (defaults are 10 s + up to 10 s random).
export const FAST_RECONNECT = {initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: 1000};

let seq = 0;
export const uniq = (prefix = 'c') => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}`;

function recordFrame(frames, message, pings) {
  if (typeof message !== 'string') {
    frames.push({packet: null, raw: message});
    return;
  }
  if (message === '' || message === '#1' || message === '#2') { // pings
    pings.push({ping: message, at: Date.now()});
    return;
  }
  let parsed;
  try { parsed = JSON.parse(message); } catch { frames.push({packet: null, raw: message}); return; }
  for (const packet of Array.isArray(parsed) ? parsed : [parsed]) frames.push({packet, raw: message});
}

/** Consumes an async iterable in the background, calling fn for each item. */
function drain(iterable, fn) {
  (async () => {
    try {
      for await (const x of iterable) fn(x);
    } catch { /* stream killed */ }
  })();
}

class Subscription {
  constructor(client, name) {
    this.client = client;
    this.name = name;
    this.messages = new Inbox(`sc${client.version} channel ${name}`);
    this.events = new Inbox(`sc${client.version} channel ${name} events`);
  }

  /** Resolves on the next 'subscribe'; rejects with the server's error on 'subscribeFail'. */
  async subscribed(timeout = 5000) {
    const ev = await this.events.next((e) => e.type === 'subscribe' || e.type === 'subscribeFail', timeout,
      `subscribe/subscribeFail of ${this.name}`);
    if (ev.type === 'subscribeFail') {
      const err = ev.error instanceof Error ? ev.error : new Error(String(ev.error && ev.error.message));
      err.subscribeFail = true;
      throw err;
    }
  }

  /** Resolves with the error of the next 'subscribeFail'; rejects if 'subscribe' comes instead. */
  async failed(timeout = 5000) {
    const ev = await this.events.next((e) => e.type === 'subscribe' || e.type === 'subscribeFail', timeout,
      `subscribeFail of ${this.name}`);
    if (ev.type === 'subscribe') throw new Error(`expected subscribeFail for ${this.name}, got subscribe`);
    return ev.error;
  }

  /** The next message published on this channel. */
  next(pred, timeout = 5000) {
    return this.messages.next(pred, timeout, `a message on ${this.name}`);
  }
}

/** socketcluster-client 20.0.2 */
export class SC20 {
  constructor(srv, opts = {}) {
    this.version = '20';
    this.frames = new Inbox('sc20 frames');
    this.pings = new Inbox('sc20 pings');
    this.events = new Inbox('sc20 events');
    this.subs = new Map();
    this.socket = sc20.create({
      hostname: srv.host,
      port: srv.httpPort,
      path: '/socketcluster/',
      connectTimeout: 5000,
      ackTimeout: 5000,
      autoReconnectOptions: FAST_RECONNECT,
      ...opts,
    });
    const s = this.socket;
    drain(s.listener('message'), ({message}) => recordFrame(this.frames, message, this.pings));
    for (const type of ['connect', 'disconnect', 'connectAbort', 'close', 'error', 'authenticate',
      'deauthenticate', 'removeAuthToken', 'subscribeFail', 'kickOut']) {
      drain(s.listener(type), (data) => this.events.push({type, ...data}));
    }
  }

  connected(timeout = 5000) {
    return this.events.next((e) => e.type === 'connect', timeout, 'connect');
  }

  subscribe(name, options) {
    const sub = new Subscription(this, name);
    const ch = this.socket.subscribe(name, options);
    sub.channel = ch;
    drain(ch, (data) => sub.messages.push(data));
    drain(ch.listener('subscribe'), (d) => sub.events.push({type: 'subscribe', ...d}));
    drain(ch.listener('subscribeFail'), (d) => sub.events.push({type: 'subscribeFail', ...d}));
    drain(ch.listener('unsubscribe'), (d) => sub.events.push({type: 'unsubscribe', ...d}));
    this.subs.set(name, sub);
    return sub;
  }

  /** invokePublish: resolves on the server's ack, rejects with its error. */
  publish(channel, data, timeout = 5000) {
    return withTimeout(this.socket.invokePublish(channel, data), timeout, `invokePublish ${channel}`);
  }

  transmitPublish(channel, data) {
    return this.socket.transmitPublish(channel, data);
  }

  invoke(event, data, timeout = 5000) {
    return withTimeout(this.socket.invoke(event, data), timeout, `invoke ${event}`);
  }

  deauthenticate() {
    return withTimeout(this.socket.deauthenticate(), 5000, 'deauthenticate');
  }

  get authState() { return this.socket.authState; }
  get authToken() { return this.socket.authToken; }
  get state() { return this.socket.state; }
  get id() { return this.socket.id; }

  disconnect() { this.socket.disconnect(); }
  connect() { this.socket.connect(); }

  close() {
    try { this.socket.disconnect(); } catch { /* ignore */ }
    this.socket.killAllChannels();
    this.socket.killAllListeners();
    this.socket.killAllReceivers();
    this.socket.killAllProcedures();
  }
}

/** socketcluster-client 14.3.2 (callback API) */
export class SC14 {
  constructor(srv, opts = {}) {
    this.version = '14';
    this.frames = new Inbox('sc14 frames');
    this.pings = new Inbox('sc14 pings');
    this.events = new Inbox('sc14 events');
    this.subs = new Map();
    this.socket = sc14.create({
      hostname: srv.host,
      port: srv.httpPort,
      path: '/socketcluster/',
      multiplex: false,
      connectTimeout: 5000,
      ackTimeout: 5000,
      autoReconnectOptions: FAST_RECONNECT,
      ...opts,
    });
    const s = this.socket;
    // Client 14.3.2 starts an ackTimeout timer for every emit, even one
    // without a callback (publish without cb, #removeAuthToken, #disconnect),
    // and never clears it. Unref those timers so that they do not hold the
    // test process open for ackTimeout after its last test.
    const emitOrig = s._emit;
    s._emit = function (event, data, callback) {
      if (callback) return emitOrig.call(this, event, data, callback);
      const setTimeoutOrig = globalThis.setTimeout;
      const timers = [];
      globalThis.setTimeout = (...args) => {
        const timer = setTimeoutOrig(...args);
        timers.push(timer);
        return timer;
      };
      try {
        return emitOrig.call(this, event, data, callback);
      } finally {
        globalThis.setTimeout = setTimeoutOrig;
        for (const timer of timers) timer.unref?.();
      }
    };
    s.on('message', (message) => recordFrame(this.frames, message, this.pings));
    s.on('connect', (status) => this.events.push({type: 'connect', ...status}));
    s.on('connectAbort', (code, reason) => this.events.push({type: 'connectAbort', code, reason}));
    s.on('disconnect', (code, reason) => this.events.push({type: 'disconnect', code, reason}));
    s.on('close', (code, reason) => this.events.push({type: 'close', code, reason}));
    s.on('error', (error) => this.events.push({type: 'error', error}));
    s.on('authenticate', (signedAuthToken) => this.events.push({type: 'authenticate', signedAuthToken}));
    s.on('deauthenticate', (oldSignedToken) => this.events.push({type: 'deauthenticate', oldSignedToken}));
    s.on('removeAuthToken', (oldToken) => this.events.push({type: 'removeAuthToken', oldToken}));
    s.on('subscribeFail', (error, channel) => this.events.push({type: 'subscribeFail', error, channel}));
    s.on('kickOut', (message, channel) => this.events.push({type: 'kickOut', message, channel}));
  }

  connected(timeout = 5000) {
    return this.events.next((e) => e.type === 'connect', timeout, 'connect');
  }

  subscribe(name, options) {
    const sub = new Subscription(this, name);
    const ch = this.socket.subscribe(name, options);
    sub.channel = ch;
    ch.watch((data) => sub.messages.push(data));
    ch.on('subscribe', () => sub.events.push({type: 'subscribe'}));
    ch.on('subscribeFail', (error) => sub.events.push({type: 'subscribeFail', error}));
    ch.on('unsubscribe', () => sub.events.push({type: 'unsubscribe'}));
    this.subs.set(name, sub);
    return sub;
  }

  /** publish with a callback: the v14 equivalent of invokePublish. */
  publish(channel, data, timeout = 5000) {
    return withTimeout(new Promise((resolve, reject) => {
      this.socket.publish(channel, data, (err, ack) => (err ? reject(err) : resolve(ack)));
    }), timeout, `publish ${channel}`);
  }

  transmitPublish(channel, data) {
    this.socket.publish(channel, data);
  }

  /** emit with a callback: the v14 equivalent of invoke. */
  invoke(event, data, timeout = 5000) {
    return withTimeout(new Promise((resolve, reject) => {
      this.socket.emit(event, data, (err, res) => (err ? reject(err) : resolve(res)));
    }), timeout, `emit ${event}`);
  }

  deauthenticate() {
    return withTimeout(new Promise((resolve, reject) => {
      this.socket.deauthenticate((err) => (err ? reject(err) : resolve()));
    }), 5000, 'deauthenticate');
  }

  get authState() { return this.socket.authState; }
  get authToken() { return this.socket.getAuthToken(); }
  get state() { return this.socket.state; }
  get id() { return this.socket.id; }

  disconnect() { this.socket.disconnect(); }
  connect() { this.socket.connect(); }

  close() {
    try { this.socket.disconnect(); } catch { /* ignore */ }
    try { this.socket.destroy(); } catch { /* ignore */ }
    this.socket.off();
  }
}

/**
 * Creates an SC client of the given version ('20' or '14'), registers its
 * cleanup, and (unless opts.wait === false) waits for the handshake.
 */
export async function connectSC(version, srv, cleanup, {wait = true, ...opts} = {}) {
  const Ctor = version === '14' ? SC14 : SC20;
  const client = new Ctor(srv, opts);
  cleanup.add(() => client.close());
  if (wait) await client.connected();
  return client;
}

/**
 * Connects an MQTT.js client (MQTT 5 by default, no auto-reconnect) and
 * records every received message in client.inbox as
 * {topic, payload: Buffer, text, properties, packet}.
 */
export async function connectMQTT(url, cleanup, opts = {}) {
  // mqtt.connect (not connectAsync) so that the message handler is in place
  // before CONNACK: a persistent session's queued messages follow it at once.
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    clientId: uniq('mqttjs'),
    reconnectPeriod: 0,
    connectTimeout: 5000,
    clean: true,
    ...opts,
  });
  client.setMaxListeners(0); // mqttPublish adds one error listener per pending publish
  client.inbox = new Inbox(`mqtt ${client.options.clientId}`);
  client.on('message', (topic, payload, packet) => {
    client.inbox.push({topic, payload, text: payload.toString('utf8'), properties: packet.properties || {}, packet});
  });
  cleanup.add(() => client.endAsync(true));
  await withTimeout(new Promise((resolve, reject) => {
    const onConnect = () => { client.removeListener('error', onError); resolve(); };
    const onError = (err) => { client.removeListener('connect', onConnect); reject(err); };
    client.once('connect', onConnect);
    client.once('error', onError);
  }), 8000, `MQTT connect ${url}`);
  client.on('error', () => { /* surfaced through failed operations (see mqttPublish) */ });
  return client;
}

/** Subscribes and checks the SUBACK granted the subscription. */
export async function mqttSubscribe(client, filter, opts = {qos: 0}) {
  const granted = await withTimeout(client.subscribeAsync(filter, opts), 5000, `MQTT subscribe ${filter}`);
  for (const g of granted) {
    if (g.qos >= 0x80) throw new Error(`MQTT subscribe ${filter} refused: reason 0x${g.qos.toString(16)}`);
  }
  return granted;
}

/** Publish and wait for the PUBACK (qos 1 by default, so ordering with later steps is certain). */
export async function mqttPublish(client, topic, payload, opts = {}) {
  let onError;
  const failed = new Promise((_, reject) => {
    onError = (err) => reject(new Error(`MQTT publish ${topic}: MQTT.js error: ${err.message}`));
    client.on('error', onError);
  });
  try {
    return await withTimeout(Promise.race([client.publishAsync(topic, payload, {qos: 1, ...opts}), failed]),
      5000, `MQTT publish ${topic}`);
  } finally {
    client.removeListener('error', onError);
  }
}

/** The packets of frames whose event is `#publish` for the given channel. */
export function publishFrames(client, channel) {
  return client.frames.items
    .map((f) => f.packet)
    .filter((p) => p && p.event === '#publish' && p.data && p.data.channel === channel);
}
