// npm run demo:browser: builds the demo page (demo/) and serves it on http://127.0.0.1:PORT/demo/ until Ctrl-C.
// Open it in a browser with WebGPU (Chrome/Edge 113+; Chromium on Linux: --enable-unsafe-webgpu). Without WebGPU
// the page says why and runs the cpu paths only. Options: --port N (default 8080, or $PORT; 0 = any free port).
import {buildBrowserAssets, OUT} from './browser/assets.mjs';
import {serveStatic} from './browser/server.mjs';

const args = process.argv.slice(2);
const port = Number(args.includes('--port') ? args[args.indexOf('--port') + 1] : process.env.PORT ?? 8080);

await buildBrowserAssets(['demo']);
const server = await serveStatic(OUT, port);
console.log(`tfjs-moe demo: ${server.url}/demo/  (Ctrl-C to stop)`);
console.log(`  preselect and run: ${server.url}/demo/?model=deepseek-v3&tokens=64&run=1`);
const stop = async () => {
  await server.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
