import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// Prometheus metrics (GET /metrics). One registry per Deps, so tests and several instances in one process
// never share counters. Hot paths only touch counters and histograms (a label lookup and an add); gauges
// that describe state (subscriptions, pool, sends in doubt) are read when Prometheus scrapes.

/** Distinct GraphQL operation names kept as labels; later names count as `other` (names come from clients). */
const MAX_OPERATION_NAMES = 200;

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Read at scrape time: what only the owners of those things know. Each may be set once they exist. */
export type MetricSources = {
  subscriptions?: () => Record<string, number>;
  dbPool?: () => Promise<Record<string, number>>;
  sendsInDoubt?: () => Promise<number>;
  jobsPending?: () => Promise<Record<string, number>>;
  webhookDeliveriesPending?: () => Promise<number>;
};

export class Metrics {
  readonly registry = new Registry();
  readonly sources: MetricSources = {};
  private readonly operationNames = new Set<string>();

  readonly httpRequests = new Counter({
    name: 'gateway_http_requests_total',
    help: 'HTTP requests answered, by route, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'gateway_http_request_duration_seconds',
    help: 'Time from the request reaching the server to the end of its response.',
    labelNames: ['route', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly graphqlOperations = new Counter({
    name: 'gateway_graphql_operations_total',
    help: 'GraphQL operations executed (fast path and Yoga alike), by type, name and outcome (success, error).',
    labelNames: ['operation_type', 'operation_name', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly graphqlDuration = new Histogram({
    name: 'gateway_graphql_operation_duration_seconds',
    help: 'Execution time of GraphQL queries and mutations (subscriptions: until the first result).',
    labelNames: ['operation_type', 'operation_name'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly eventsPublished = new Counter({
    name: 'gateway_events_published_total',
    help: 'Events published after a commit, by topic.',
    labelNames: ['topic'] as const,
    registers: [this.registry],
  });
  readonly eventDeliveryLag = new Histogram({
    name: 'gateway_event_delivery_lag_seconds',
    help: 'From publishing (after the commit) to delivery to this instance\'s subscribers; across instances it includes clock skew.',
    labelNames: ['source'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly smsSends = new Counter({
    name: 'gateway_sms_sends_total',
    help: 'Calls to the SMS provider to send a message, by provider and outcome (accepted, refused, in_doubt, busy, failed).',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly inboundMessages = new Counter({
    name: 'gateway_inbound_messages_total',
    help: 'Inbound messages stored (each once, whatever the webhook retries).',
    registers: [this.registry],
  });
  readonly jobsRun = new Counter({
    name: 'gateway_jobs_total',
    help: 'Background job runs (scheduled replies, ...) by queue and outcome (done, postponed, failed).',
    labelNames: ['queue', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly webhookAttempts = new Counter({
    name: 'gateway_webhook_attempts_total',
    help: 'Outgoing webhook attempts made by this instance, by outcome (succeeded; retry: failed, tried again later; failed: the last attempt failed).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly dbReads = new Counter({
    name: 'gateway_db_reads_total',
    help: 'Read-only requests (GraphQL queries, REST GETs) by the database they read from (primary, replica); counted only with DATABASE_READ_URL. A read retried on the primary after the replica failed counts on both.',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });

  readonly webhookAttemptDuration = new Histogram({
    name: 'gateway_webhook_attempt_duration_seconds',
    help: 'Time from sending an outgoing webhook to its answer (or its failure).',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
    registers: [this.registry],
  });

  constructor() {
    const sources = this.sources;
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'gateway_subscriptions_active',
      help: 'Open subscriptions on this instance, by transport (ws: graphql-ws operations, sse: event streams).',
      labelNames: ['transport'] as const,
      registers: [this.registry],
      collect() {
        for (const [transport, count] of Object.entries(sources.subscriptions?.() ?? {})) this.set({ transport }, count);
      },
    });
    new Gauge({
      name: 'gateway_db_pool_connections',
      help: "Database connections of this instance by state (open, busy, idle, max); behind a pooler the instance's own count of its connections to the pooler (busy, waiting, max).",
      labelNames: ['state'] as const,
      registers: [this.registry],
      async collect() {
        for (const [state, count] of Object.entries((await sources.dbPool?.()) ?? {})) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'gateway_sends_in_doubt',
      help: 'Replies handed to the provider with no answer stored yet, older than the provider timeout (settled by the sweeper).',
      registers: [this.registry],
      async collect() {
        if (sources.sendsInDoubt) this.set(await sources.sendsInDoubt());
      },
    });
    new Gauge({
      name: 'gateway_jobs_pending',
      help: 'Background jobs waiting in the job table (due now or later), by queue.',
      labelNames: ['queue'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [queue, count] of Object.entries((await sources.jobsPending?.()) ?? {})) this.set({ queue }, count);
      },
    });
    new Gauge({
      name: 'gateway_webhook_deliveries_pending',
      help: 'Outgoing webhook deliveries not yet succeeded or failed (due now, being attempted, or waiting for a retry).',
      registers: [this.registry],
      async collect() {
        if (sources.webhookDeliveriesPending) this.set(await sources.webhookDeliveriesPending());
      },
    });
  }

  /** The read replica's gauges (only with DATABASE_READ_URL), read when Prometheus scrapes. */
  watchReplica(replica: { readonly usable: boolean; lagSeconds(): Promise<number | null> }): void {
    new Gauge({
      name: 'gateway_db_replica_lag_seconds',
      help: 'How far the read replica is behind the primary (now() - pg_last_xact_replay_timestamp() while it has WAL to replay, else 0); NaN while it is unreachable.',
      registers: [this.registry],
      async collect() {
        this.set((await replica.lagSeconds()) ?? Number.NaN);
      },
    });
    new Gauge({
      name: 'gateway_db_replica_up',
      help: '1 while reads go to the read replica, 0 while it is unreachable and reads go to the primary.',
      registers: [this.registry],
      collect() {
        this.set(replica.usable ? 1 : 0);
      },
    });
  }

  /** Counts one GraphQL operation; `startedAt` from performance.now(). */
  operation(type: string, name: string | null | undefined, outcome: 'success' | 'error', startedAt: number): void {
    const operationName = this.operationName(name);
    this.graphqlOperations.inc({ operation_type: type, operation_name: operationName, outcome });
    this.graphqlDuration.observe({ operation_type: type, operation_name: operationName }, (performance.now() - startedAt) / 1000);
  }

  private operationName(name: string | null | undefined): string {
    if (!name) return 'anonymous';
    if (this.operationNames.has(name)) return name;
    if (this.operationNames.size >= MAX_OPERATION_NAMES) return 'other';
    this.operationNames.add(name);
    return name;
  }
}
