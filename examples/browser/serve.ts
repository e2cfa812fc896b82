/**
 * Serves the browser demo: bundles examples/browser/main.ts with esbuild and serves it, its page
 * and tfjs's wasm binaries on 127.0.0.1 (nothing else, no other network).
 *
 *   npm run demo:browser                   # http://127.0.0.1:8080/
 *   npm run demo:browser -- --port 9000    # another port (0: any free port)
 */
import { parseArgs } from 'node:util';
import { startDemoServer } from './server';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be an integer in 0..65535, got '${values.port}'`);
  }
  let server;
  try {
    server = await startDemoServer({ port });
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'EADDRINUSE') {
      throw new Error(`port ${port} is in use; pick another with --port <n> (0: any free port)`);
    }
    throw err;
  }
  console.log(`blitz-ts browser demo: ${server.url}`);
  console.log('(serving on 127.0.0.1 only; Ctrl-C to stop)');
  const stop = () => {
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
