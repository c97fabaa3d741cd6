// The per-request cryptographic floor of any verifier of this protocol, in µs (see
// floor-work.mjs) — the same floor bench/verifier.mjs measures. Prints one JSON line. Run it
// pinned (bench/http.mjs does).
import { floorWork } from './floor-work.mjs';

const { backend, one } = floorWork();
for (let i = 0; i < 500; i++) one();
let n = 0;
const t0 = process.hrtime.bigint();
let el = 0;
while (el < 1500) {
  for (let i = 0; i < 200; i++) one();
  n += 200;
  el = Number(process.hrtime.bigint() - t0) / 1e6;
}
console.log(JSON.stringify({ backend, floor_us: (el * 1000) / n }));
