#!/usr/bin/env node
// `trustplane-adapter …` is `trustplane adapter …` (the adapter image's entry point).
import { main } from '../dist/src/main.js';

process.exitCode = await main([process.argv[0], process.argv[1], 'adapter', ...process.argv.slice(2)]);
