#!/usr/bin/env node
// `trustplane-broker …` is `trustplane broker serve …` (the broker image's entry point).
import { main } from '../dist/src/main.js';

process.exitCode = await main([process.argv[0], process.argv[1], 'broker', 'serve', ...process.argv.slice(2)]);
