#!/usr/bin/env node
// The `trustplane` command. A committed shim (not build output), so that npm can link the bin
// at install time, before `prepare` has compiled dist/.
import { main } from '../dist/src/main.js';

process.exitCode = await main(process.argv);
