/**
 * `npm run demo`: builds the browser bundles (web/build.ts) and serves the demo page on
 * 127.0.0.1 (`--port N`, default 8173; 0 picks a free one). The server serves the package root,
 * restricted to what the page needs — the page (`web/`), the bundles (`dist/*.js`), the model and
 * tokenizer (`weights/ofa-tiny-demo/`, `weights/ofa-bpe/`) and the shipped scenes — with range
 * requests (sirv), so the checkpoint is read tensor by tensor like a file.
 */
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import sirv from 'sirv';
import { buildWeb } from './build.js';

/** URL prefixes the server answers; everything else is 404. */
const SERVED = ['/web/', '/dist/mue.browser.js', '/dist/demo.js', '/weights/ofa-tiny-demo/', '/weights/ofa-bpe/', '/data/shapes-eval/', '/test/fixtures/preprocess/'];

export interface DemoServer {
  server: Server;
  /** The page's URL, e.g. `http://127.0.0.1:8173/web/`. */
  url: string;
  close(): Promise<void>;
}

export interface ServeOptions {
  /** Default 8173; 0 picks a free port. */
  port?: number;
  /** More URL prefixes to serve (tests serve their own pages). */
  also?: readonly string[];
}

/** Serves the package root's demo files on 127.0.0.1; `/` redirects to the page. */
export async function serveDemo({ port = 8173, also = [] }: ServeOptions = {}): Promise<DemoServer> {
  const served = [...SERVED, ...also];
  const files = sirv(fileURLToPath(new URL('../', import.meta.url)), { dev: true, dotfiles: false });
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    if (path === '/') {
      response.writeHead(302, { Location: '/web/' }).end();
      return;
    }
    if (path.includes('..') || !served.some((prefix) => (prefix.endsWith('/') ? path.startsWith(prefix) : path === prefix || path === `${prefix}.map`))) {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end(`not served: ${path}\n`);
      return;
    }
    files(request, response, () => {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end(`not found: ${path}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${bound}/web/`,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}

function portArgument(argv: readonly string[]): number {
  const at = argv.indexOf('--port');
  if (at < 0) return 8173;
  const port = Number(argv[at + 1]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected a port number, got ${argv[at + 1]}`);
  return port;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildWeb();
  const { url } = await serveDemo({ port: portArgument(process.argv) });
  console.log(`mue demo: ${url} (Chromium or Firefox with WebGPU; Ctrl-C stops)`);
}
