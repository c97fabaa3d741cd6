/**
 * Items pushed during one event-loop turn, handed over together once, at the end of the turn
 * (setImmediate by default) or when `flush()` is called. The one batching mechanism behind the
 * audit line writes, the turn's verifications, Redis consumes and cluster replay questions.
 */
export class TurnQueue<T> {
  private items: T[] = [];
  private scheduled = false;

  constructor(
    private readonly onFlush: (items: T[]) => void,
    private readonly schedule: (fn: () => void) => void = setImmediate,
  ) {}

  push(item: T): void {
    this.items.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flush);
    }
  }

  /** Hand over what is queued now (also runs by itself at the end of the turn). */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.items.length === 0) return;
    const items = this.items;
    this.items = [];
    this.onFlush(items);
  };

  /** Drop what is queued, without handing it over. */
  clear(): void {
    this.items = [];
  }
}
