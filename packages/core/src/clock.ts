/**
 * Clocks. The verifier reads time only through a `Clock`, so tests inject one; and it wraps
 * whatever it is given in a `MonotonicClock`, so a wall clock stepping backwards can never
 * re-open a replay window or un-expire a passport.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Never runs backwards: returns the maximum of the source's readings so far. */
export class MonotonicClock implements Clock {
  private last = -Infinity;

  constructor(private readonly source: Clock = systemClock) {}

  now(): number {
    const t = this.source.now();
    if (t > this.last) this.last = t;
    return this.last;
  }
}

/** A clock for tests and simulations: set or advance by hand. */
export class ManualClock implements Clock {
  constructor(private ms: number) {}

  now(): number {
    return this.ms;
  }

  set(ms: number): void {
    this.ms = ms;
  }

  advance(ms: number): void {
    this.ms += ms;
  }
}
