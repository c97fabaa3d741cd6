#!/usr/bin/env node
// `trustplane-issuer …` is `trustplane issuer serve …` (the issuer service's entry point).
import { main } from '../dist/src/main.js';

process.exitCode = await main([process.argv[0], process.argv[1], 'issuer', 'serve', ...process.argv.slice(2)]);
