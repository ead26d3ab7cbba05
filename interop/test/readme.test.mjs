// The README's SocketCluster example runs as written: the script in the
// `cat > demo.mjs <<'EOF'` block of README.md and bridge/README.md is run
// with node against a real sockmq (its port swapped for the test's), must
// print what it received and exit by itself, and an MQTT subscriber sees
// the same message.

import {test, describe, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {readFile, writeFile, rm} from 'node:fs/promises';
import path from 'node:path';
import {promisify} from 'node:util';
import {Sockmq, interopDir, repoDir} from './harness.mjs';
import {connectMQTT, mqttSubscribe} from './clients.mjs';

const run = promisify(execFile);
const T = {timeout: 40000};

/** The demo script and the install command of a README. */
async function demoOf(file) {
  const text = await readFile(path.join(repoDir, file), 'utf8');
  const m = text.match(/cat > demo\.mjs <<'EOF'\n([\s\S]*?)\nEOF\nnode demo\.mjs\n/);
  assert.ok(m, `${file} has no runnable "cat > demo.mjs <<'EOF' ... EOF; node demo.mjs" example`);
  assert.match(text, /npm install socketcluster-client/, `${file} does not say how to install the client`);
  return m[1];
}

describe('README SocketCluster example', () => {
  let srv;
  before(async () => { srv = await Sockmq.start({name: 'readme'}); });
  after(async () => { await srv?.close(); });

  for (const file of ['README.md', 'bridge/README.md']) {
    test(`${file}: the demo runs as written and exits`, T, async (t) => {
      await srv.guard(async (_t, cleanup) => {
        const script = await demoOf(file);
        assert.match(script, /port: 8080/, 'the demo connects to the default port');
        // Inside interop/ so that `import 'socketcluster-client'` resolves
        // to the installed client, as in the user's sc-demo directory.
        const demo = path.join(interopDir, `.readme-demo-${process.pid}.mjs`);
        await writeFile(demo, script.replace('port: 8080', `port: ${srv.httpPort}`));
        cleanup.add(() => rm(demo, {force: true}));

        const mqtt = await connectMQTT(srv.mqttUrl, cleanup);
        await mqttSubscribe(mqtt, 'sensors/#', {qos: 1});
        let stdout;
        try {
          ({stdout} = await run(process.execPath, [demo], {timeout: 20000}));
        } catch (err) {
          err.message += `\ndemo stdout: ${err.stdout}\ndemo stderr: ${err.stderr}`;
          throw err;
        }
        assert.match(stdout, /sensors\/room1 \{ t: 21\.5 \}/, "the demo prints the concrete topic and the data of the wildcard channel");
        const m = await mqtt.inbox.next((x) => x.topic === 'sensors/room1');
        assert.deepEqual(JSON.parse(m.text), {t: 21.5});
      })(t);
    });
  }
});
