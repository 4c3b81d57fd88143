// V8 flags every server under measurement runs with, the gateway as `npm start` runs it (package.json).
// A 64 MB young generation: the gateway allocates a response's worth of short-lived objects per request, and
// with V8's default semi-space those survive into extra scavenges; this cut its CPU per inbox request by about
// 40% (bench/optimizations.md). The floor and PostGraphile get the same flags, so ratios compare like with like.
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=64'];
