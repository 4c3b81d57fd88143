import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { JobRow } from '../../db/tables.js';
import { PeriodicTask } from '../periodic.js';
import { claimDueJobs, finishJob, postponeJob } from './queue.js';

/** What a handler's run decided: the job is finished (deleted), or runs again at a later time. */
export type JobOutcome = { done: true } | { runAt: Date; reason: string };
export type JobHandler = (job: JobRow) => Promise<JobOutcome>;

export const JOB_DONE: JobOutcome = { done: true };

/** A handler that threw runs again after 2^attempts seconds, at most 5 minutes. */
const backoffMs = (attempts: number) => Math.min(300_000, 1000 * 2 ** Math.min(attempts, 9));

export type JobRunnerOptions = { pollMs: number; leaseMs: number; concurrency: number };

/**
 * Each instance's runner: every pollMs (and at start) it claims as many due jobs as it has room for, runs
 * them side by side, and claims again while it finds full batches. close() stops claiming and waits for
 * the jobs under way; a job an instance never finished is claimed by another once its lease ends.
 */
export class JobRunner {
  private readonly task: PeriodicTask;
  private closed = false;
  /** Jobs this instance finished (deleted): for tests and the operator's logs. */
  ran = 0;

  constructor(
    private readonly db: Db,
    private readonly handlers: Record<string, JobHandler>,
    private readonly options: JobRunnerOptions,
    private readonly logger: Logger,
    /** Told how each run ended (metrics). */
    private readonly onOutcome: (queue: string, outcome: 'done' | 'postponed' | 'failed') => void = () => {},
  ) {
    this.task = new PeriodicTask('running due jobs', options.pollMs, () => this.drain(), logger);
  }

  start(): void {
    this.task.start();
  }

  /** Runs what is due now (tests; the periodic run does the same). */
  runNow(): Promise<void> {
    return this.task.runNow();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.task.close();
  }

  /**
   * Claims as many due jobs as there are free slots, and claims again as slots free up while claims come
   * back full; once fewer are due than there is room for, it lets those finish and waits for the next poll.
   */
  private async drain(): Promise<void> {
    const queues = Object.keys(this.handlers);
    const running = new Set<Promise<void>>();
    try {
      while (!this.closed) {
        const room = this.options.concurrency - running.size;
        if (room > 0) {
          const claimed = await claimDueJobs(this.db, queues, room, this.options.leaseMs);
          for (const job of claimed) {
            const run = this.run(job).finally(() => running.delete(run));
            running.add(run);
          }
          if (claimed.length < room) return;
        }
        await Promise.race(running);
      }
    } finally {
      await Promise.all(running);
    }
  }

  private async run(job: JobRow): Promise<void> {
    const context = { jobId: job.id, queue: job.queue, key: job.key, attempt: job.attempts };
    try {
      const outcome = await this.handlers[job.queue]!(job);
      if ('done' in outcome) {
        await finishJob(this.db, job.id);
        this.ran += 1;
        this.onOutcome(job.queue, 'done');
      } else {
        await postponeJob(this.db, job.id, outcome.runAt, null);
        this.onOutcome(job.queue, 'postponed');
        this.logger.debug({ ...context, runAt: outcome.runAt, reason: outcome.reason }, 'job postponed');
      }
    } catch (error) {
      const runAt = new Date(Date.now() + backoffMs(job.attempts));
      this.logger.warn({ ...context, err: error, runAt }, 'job failed; tried again later');
      this.onOutcome(job.queue, 'failed');
      // If even this fails (the database is gone), the lease ends and the job is claimed again.
      await postponeJob(this.db, job.id, runAt, error instanceof Error ? error.message : String(error)).catch(() => {});
    }
  }
}
