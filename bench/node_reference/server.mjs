// The Node reference tus server for bench/bench_suite.py: @tus/server with @tus/file-store,
// no hashing, no authentication (the bench's Authorization header is ignored).
// Usage: node server.mjs PORT DIRECTORY
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error('usage: node server.mjs PORT DIRECTORY');
  process.exit(2);
}
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const http = server.listen({ host: '127.0.0.1', port: Number(port) }, () => {
  console.log(`@tus/server listening on http://127.0.0.1:${port}/files, data in ${directory}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => http.close(() => process.exit(0)));
}
