// The parent of `bare-proxy.mjs <port> <upstream> floor-ipc`: it forks the proxy with an IPC
// channel and answers its consume questions from a Set, in arrival order — the shape of the
// adapter's primary owning the in-memory replay store for its workers, and nothing else.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const seen = new Set();
const child = fork(fileURLToPath(new URL('./bare-proxy.mjs', import.meta.url)), [...process.argv.slice(2), 'floor-ipc'], { stdio: 'inherit' });
child.on('message', (m) => {
  const fresh = !seen.has(m.key);
  seen.add(m.key);
  child.send({ id: m.id, fresh });
});
child.once('exit', (code) => process.exit(code ?? 1));
process.on('SIGTERM', () => child.kill('SIGTERM'));
