/**
 * A tiny static server for the browser demo and the browser tests: esbuild bundles a TypeScript
 * entry for the browser, and node:http serves it with its page and tfjs's wasm binaries on
 * 127.0.0.1 only. Nothing else is served (404), nothing is fetched from the network.
 */
import { build } from 'esbuild';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = path.resolve(here, '../..');

/** One file the server answers with. */
export interface Route {
  readonly type: string;
  readonly body: string | Uint8Array;
}
/** URL path (`/main.js`) -> file. */
export type Routes = Readonly<Record<string, Route>>;

/** A running server: its base URL (ending in `/`) and how to stop it. */
export interface RunningServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * `bundleForBrowser(entry) -> Promise<js>`: esbuild bundle (platform browser, one IIFE) of a
 * TypeScript entry. The Node-only backends stay out: blitz-ts loads them by name at run time.
 * esbuild reads tsconfig.json's `paths`, so `import ... from 'blitz-ts'` bundles src/index.ts.
 */
export async function bundleForBrowser(entry: string): Promise<string> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    write: false,
    logLevel: 'silent',
    external: ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
  });
  const out = r.outputFiles[0];
  if (!out) throw new Error(`esbuild produced no output for ${entry}`);
  return out.text;
}

/** `wasmRoutes() -> Routes`: tfjs's wasm binaries under `/wasm/` (for `wasmPaths: '/wasm/'`). */
export function wasmRoutes(): Routes {
  const require = createRequire(import.meta.url);
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  const files = readdirSync(dist).filter((f) => f.endsWith('.wasm'));
  if (files.length === 0) throw new Error(`no .wasm binaries in ${dist}`);
  return Object.fromEntries(
    files.map((f) => [
      `/wasm/${f}`,
      { type: 'application/wasm', body: new Uint8Array(readFileSync(path.join(dist, f))) },
    ]),
  );
}

/**
 * `startServer(routes, port) -> Promise<RunningServer>`: serves `routes` on 127.0.0.1:`port`
 * (`0` picks a free port). `/` serves `/index.html`.
 */
export function startServer(routes: Routes, port = 0): Promise<RunningServer> {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const route = routes[pathname === '/' ? '/index.html' : pathname];
    if (!route || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': route.type, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : route.body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        reject(new Error(`the server listens on ${String(address)}, not on a TCP port`));
        return;
      }
      const actual = address.port;
      resolve({
        url: `http://127.0.0.1:${actual}/`,
        port: actual,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

/** `demoRoutes() -> Promise<Routes>`: the demo page, its bundle and the wasm binaries. */
export async function demoRoutes(): Promise<Routes> {
  return {
    '/index.html': {
      type: 'text/html; charset=utf-8',
      body: readFileSync(path.join(here, 'index.html'), 'utf8'),
    },
    '/main.js': {
      type: 'text/javascript; charset=utf-8',
      body: await bundleForBrowser(path.join(here, 'main.ts')),
    },
    ...wasmRoutes(),
  };
}

/** `startDemoServer({ port }) -> Promise<RunningServer>`: bundles and serves the demo. */
export async function startDemoServer(o: { port?: number } = {}): Promise<RunningServer> {
  return startServer(await demoRoutes(), o.port ?? 0);
}
