import type { Server } from 'node:http';

/** IPC with the benchmark runner: request/statement counters and CPU profiles of the measured window. */
export declare function reportStats(server: Server, read: () => Record<string, number>): void;
