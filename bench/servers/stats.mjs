import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

// The runner talks to the server under test over IPC: "stats" answers with SQL statements sent (read
// through `read`) and HTTP requests finished, so per-request figures divide by what the server
// actually served (autocannon leaves requests in flight at the end of a run); "profile:start" and
// "profile:stop <file>" record a CPU profile of just the measured window (what --cpu-prof would give,
// without the start-up); "gc" runs a full garbage collection (the inspector's, so no --expose-gc), so
// the subscription scenario compares memory held, not garbage not yet collected.
export function reportStats(server, read) {
  let requests = 0;
  server.on('request', (_req, res) => {
    res.once('close', () => {
      requests += 1;
    });
  });
  if (!process.send) return;
  let session = null;
  const post = (method, params) =>
    new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  process.on('message', async (message) => {
    if (message === 'stats') process.send({ type: 'stats', requests, ...read() });
    if (message === 'gc') {
      const collector = new Session();
      collector.connect();
      await new Promise((resolve, reject) => collector.post('HeapProfiler.collectGarbage', (error) => (error ? reject(error) : resolve())));
      collector.disconnect();
      process.send({ type: 'gc:done' });
    }
    if (message === 'profile:start') {
      session = new Session();
      session.connect();
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 200 });
      await post('Profiler.start');
      process.send({ type: 'profile:started' });
    }
    if (typeof message === 'string' && message.startsWith('profile:stop ')) {
      const { profile } = await post('Profiler.stop');
      session.disconnect();
      writeFileSync(message.slice('profile:stop '.length), JSON.stringify(profile));
      process.send({ type: 'profile:stopped' });
    }
  });
}
