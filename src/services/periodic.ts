import type { Logger } from 'pino';

/**
 * Runs a task at start and then every `everyMs`, one run at a time (a slow run delays the next rather than
 * overlapping it); close() stops it and waits for a run under way. The composition root makes and closes these.
 */
export class PeriodicTask {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly everyMs: number,
    private readonly task: () => Promise<unknown>,
    private readonly logger: Pick<Logger, 'warn'>,
  ) {}

  start(): void {
    if (this.timer || this.closed) return;
    this.run();
    this.timer = setInterval(() => this.run(), this.everyMs);
    this.timer.unref();
  }

  /** Runs the task now (unless a run is under way) and resolves when that run ends. */
  runNow(): Promise<void> {
    this.run();
    return this.running ? this.running.then(() => {}) : Promise.resolve();
  }

  /** Stops; waits for a run under way. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  private run(): void {
    if (this.running || this.closed) return;
    this.running = this.task()
      .catch((error) => this.logger.warn({ err: error }, `${this.name} failed; tried again later`))
      .finally(() => {
        this.running = null;
      });
  }
}
