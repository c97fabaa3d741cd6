#!/usr/bin/env node
// `trustplane-verifier …` is `trustplane verifier …` (the forward-auth verifier's entry point).
import { main } from '../dist/src/main.js';

process.exitCode = await main([process.argv[0], process.argv[1], 'verifier', ...process.argv.slice(2)]);
