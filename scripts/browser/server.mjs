// A static file server on 127.0.0.1 for the browser suite and the demo page (nothing else is reachable there).
import {createReadStream, statSync} from 'node:fs';
import {createServer} from 'node:http';
import {extname, join, normalize, sep} from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** Serves root on 127.0.0.1:port (0 = any free port); resolves to {url, close}. */
export function serveStatic(root, port = 0) {
  const base = normalize(root + sep);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    if (path === '/favicon.ico') {
      res.writeHead(204).end();  // no icon; a 404 would show up as a console error on every page
      return;
    }
    let file = normalize(join(base, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(base)) {
      res.writeHead(403).end();
      return;
    }
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      statSync(file);
    } catch {
      res.writeHead(404, {'content-type': 'text/plain'}).end(`not found: ${path}`);
      return;
    }
    // No caching: a rebuilt bundle must be what the next page load runs.
    res.writeHead(200, {'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store'});
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const {port: actual} = server.address();
      resolve({url: `http://127.0.0.1:${actual}`, close: () => new Promise(r => server.close(() => r()))});
    });
  });
}
