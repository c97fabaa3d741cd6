/**
 * `trustplane gen-key`: a new Ed25519 key, written as the 64-byte key file form (SPEC §3,
 * base64url of seed ‖ public key) with mode 0600, atomically. Prints the kid, the public key
 * and its fingerprint — never the private key.
 */
import { existsSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { fingerprint, formatPrivateKey, generatePrivateKey, publicKeyBase64url } from '@trustplane/core';
import { defaultKid, refuseOverwrite, writeSecretFileAtomic } from '../files.js';
import { parseNonEmpty, parseText } from '../options.js';
import { writeJson, writeRows, type CliIo } from '../output.js';

interface GenKeyOptions {
  out: string;
  force?: true;
  kid?: string;
  json?: true;
}

export function registerGenKey(program: Command, io: CliIo): void {
  program
    .command('gen-key')
    .description('Generate an Ed25519 key and write it to a file with mode 0600')
    .addOption(new Option('--out <file>', 'where to write the private key file').argParser(parseNonEmpty).makeOptionMandatory())
    .option('--force', 'replace the file if it already exists')
    .addOption(new Option('--kid <kid>', 'key id to report (default: key- + first 16 hex characters of the fingerprint)').argParser(parseText))
    .option('--json', 'print JSON: {kid, public_key_b64url, fingerprint, private_key_file}')
    .action((opts: GenKeyOptions) => {
      // Refuse early, before generating anything; the write itself re-checks atomically.
      if (opts.force !== true && existsSync(opts.out)) throw refuseOverwrite(opts.out);
      const key = generatePrivateKey();
      writeSecretFileAtomic(opts.out, `${formatPrivateKey(key)}\n`, opts.force === true);
      const kid = opts.kid ?? defaultKid(key.publicKey);
      const result = {
        kid,
        public_key_b64url: publicKeyBase64url(key),
        fingerprint: fingerprint(key.publicKey),
        private_key_file: opts.out,
      };
      if (opts.json === true) {
        writeJson(io, result);
        return;
      }
      writeRows(io, [
        ['kid', result.kid],
        ['public key', result.public_key_b64url],
        ['fingerprint', result.fingerprint],
        ['private key', `${result.private_key_file} (mode 0600)`],
      ]);
    });
}
