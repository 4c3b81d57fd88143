import { createServer } from 'node:http';

// N loopback webhook receivers in a process of their own (forked with an IPC channel), as the customer's
// systems would be: they answer 204 at once. When listening, sends the receivers' ports. Answers "count"
// with the number of events received; "delays:start" starts noting each event's delay (receipt minus the
// body's `timestamp`, the time of the statement that wrote it); "delays:stop" answers with those delays.
const count = Number(process.argv[2] ?? 3);
let received = 0;
let delays = null;
const ports = [];
for (let i = 0; i < count; i += 1) {
  const server = createServer((req, res) => {
    const chunks = delays ? [] : null;
    req.on('data', (chunk) => chunks?.push(chunk));
    req.on('end', () => {
      const at = Date.now();
      received += 1;
      if (chunks && delays) delays.push(at - Date.parse(JSON.parse(Buffer.concat(chunks).toString()).timestamp));
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  ports.push(server.address().port);
}
process.send(ports);
process.on('message', (message) => {
  if (message === 'count') process.send(received);
  if (message === 'delays:start') delays = [];
  if (message === 'delays:stop') {
    process.send({ delays: delays ?? [] });
    delays = null;
  }
});
process.on('disconnect', () => process.exit(0));
