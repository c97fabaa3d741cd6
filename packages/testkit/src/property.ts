/**
 * Time-boxed, reproducible property runs for the parser property suites (issue 17).
 *
 * Every property runs with one seed (`PROPERTY_SEED`, default fixed, so CI runs the same cases
 * each time) and fast-check's `interruptAfterTimeLimit`, so a slow or shared machine shortens a
 * run instead of stalling the suite. A run interrupted before `minRuns` is a failure: a property
 * that tested almost nothing must not pass. A failure's message carries fast-check's report
 * (seed, path, counterexample): `PROPERTY_SEED=<seed>` replays it.
 */
import fc from 'fast-check';

/** The seed every property of a run uses: `PROPERTY_SEED` from the environment, else fixed. */
export const PROPERTY_SEED: number = (() => {
  const raw = process.env['PROPERTY_SEED'];
  if (raw === undefined || raw === '') return 0x1717;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new TypeError(`PROPERTY_SEED must be an integer, not ${JSON.stringify(raw)}`);
  return n;
})();

export interface PropertyRunOptions {
  /** Runs wanted (the time limit may stop it earlier). */
  numRuns: number;
  /** Wall-clock cap of the whole property, shrinking included (default 2000 ms). */
  timeLimitMs?: number;
  /** Fewer completed runs than this (default a tenth of numRuns, at least 1) fail the property. */
  minRuns?: number;
}

/** Counts properties and runs of one test file, for its `property: N properties, M runs` line. */
export class PropertyTally {
  properties = 0;
  runs = 0;
  interrupted = 0;

  constructor(readonly suite: string) {}

  /** Run a synchronous property; throws with fast-check's report when it fails. */
  check<Ts>(property: fc.IProperty<Ts>, opts: PropertyRunOptions): void {
    this.record(fc.check(property, this.params(opts)), opts);
  }

  /** Run an asynchronous property; rejects with fast-check's report when it fails. */
  async checkAsync<Ts>(property: fc.IAsyncProperty<Ts>, opts: PropertyRunOptions): Promise<void> {
    this.record(await fc.check(property, this.params(opts)), opts);
  }

  /** The count line a suite prints at its end. */
  summary(): string {
    const cut = this.interrupted === 0 ? '' : `, ${this.interrupted} cut short by the time limit`;
    return `property: ${this.properties} properties, ${this.runs} runs (${this.suite}, seed ${PROPERTY_SEED}${cut})`;
  }

  private params<Ts>(opts: PropertyRunOptions): fc.Parameters<Ts> {
    return { numRuns: opts.numRuns, seed: PROPERTY_SEED, plugins: [fc.interruptAfterTimeLimit(opts.timeLimitMs ?? 2000) as fc.Plugin<Ts>] };
  }

  private record<Ts>(details: fc.RunDetails<Ts>, opts: PropertyRunOptions): void {
    this.properties++;
    this.runs += details.numRuns;
    if (details.failed) {
      const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
      throw new Error(`${fc.defaultReportMessage(details) ?? 'property failed'}\nError: ${cause}\n(replay: PROPERTY_SEED=${details.seed})`, { cause: details.errorInstance });
    }
    if (details.interrupted) this.interrupted++;
    const min = opts.minRuns ?? Math.max(1, Math.floor(opts.numRuns / 10));
    if (details.numRuns < min) throw new Error(`property ran only ${details.numRuns} of ${opts.numRuns} runs before its time limit (at least ${min} needed)`);
  }
}
