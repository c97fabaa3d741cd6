#!/usr/bin/env node
// npm run bench: the verifier pipeline benchmark pinned to one core (taskset), so ratios are
// per-core. Falls back to unpinned, with a warning, where taskset is missing.
import { spawnSync } from 'node:child_process';
const script = new URL('../bench/verifier.mjs', import.meta.url).pathname;
const pin = spawnSync('taskset', ['--version']).status === 0;
if (!pin) console.error('WARNING: taskset not found; running unpinned');
const cmd = pin ? ['taskset', ['-c', '0', process.execPath, script]] : [process.execPath, [script]];
const r = spawnSync(cmd[0], cmd[1], { stdio: 'inherit', env: { ...process.env, BENCH_PINNED: pin ? 'cpu0' : 'no' } });
process.exit(r.status ?? 1);
