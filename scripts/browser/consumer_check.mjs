// The bundler check of the browser suite: a consumer project that depends on tfjs-moe (and tfjs, its peer) is
// bundled for the browser with esbuild and with vite. Neither may pull a Node built-in (fs, path, module, ...) in
// through tfjs-moe, and the Node-only entry (tfjs-moe/node: checkpoint folders on disk) must not reach the bundle.
// As a control, the same check run on tfjs-moe/node must fail: it proves the check can see a Node built-in.
import {builtinModules} from 'node:module';
import {mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, resolve, sep} from 'node:path';
import {build as esbuild} from 'esbuild';

const ROOT = realpathSync(resolve('.'));
const NODE_BUILTIN = new RegExp(`^(node:.*|(${builtinModules.map(m => m.replace(/[/]/g, '\\/')).join('|')})(/.*)?)$`);

/** Whether a resolved module path belongs to the tfjs-moe package itself (not to its dependencies). */
function ownFile(path) {
  const real = path.replace(/^\(disabled\):/, '');
  return real.startsWith(ROOT + sep) && !real.slice(ROOT.length).includes(`${sep}node_modules${sep}`);
}

function makeConsumer(entrySpecifier) {
  const dir = mkdtempSync(join(tmpdir(), 'tfjs-moe-consumer-'));
  mkdirSync(join(dir, 'node_modules'));
  // What `npm install tfjs-moe @tensorflow/tfjs-core ...` gives a consumer, without a registry round trip.
  symlinkSync(ROOT, join(dir, 'node_modules', 'tfjs-moe'), 'dir');
  symlinkSync(realpathSync(join(ROOT, 'node_modules', '@tensorflow')), join(dir, 'node_modules', '@tensorflow'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({name: 'consumer', private: true, type: 'module'}));
  writeFileSync(join(dir, 'main.js'), `
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as moe from '${entrySpecifier}';
// Use the package so that nothing is tree-shaken away before the check.
globalThis.__consumer = {tf, moe, names: Object.keys(moe)};
`);
  writeFileSync(join(dir, 'index.html'), '<!doctype html><script type="module" src="./main.js"></script>');
  return dir;
}

/** esbuild, platform browser: an unresolvable Node built-in is a build error; metafile lists every input. */
async function esbuildConsumer(dir) {
  try {
    const result = await esbuild({
      absWorkingDir: dir, entryPoints: ['main.js'], bundle: true, format: 'esm', platform: 'browser',
      outfile: join(dir, 'out', 'esbuild.js'), metafile: true, logLevel: 'silent', write: true,
    });
    const inputs = Object.keys(result.metafile.inputs).map(p => p.startsWith('(disabled)') ? p : resolve(dir, p));
    const builtins = [];
    for (const [file, info] of Object.entries(result.metafile.inputs)) {
      for (const imp of info.imports) {
        if (NODE_BUILTIN.test(imp.original ?? imp.path) && ownFile(resolve(dir, file))) {
          builtins.push(`${imp.original ?? imp.path} from ${file}`);
        }
      }
    }
    const ownInputs = inputs.filter(ownFile);
    return {ok: true, builtins, ownInputs, bytes: readFileSync(join(dir, 'out', 'esbuild.js')).length};
  } catch (e) {
    const errors = (e.errors ?? []).map(er => `${er.text}${er.location ? ` (${er.location.file})` : ''}`);
    return {ok: false, builtins: errors.filter(t => /resolve "?(node:)?\w/.test(t)), errors};
  }
}

/** vite (rollup): built-ins become browser stubs with a warning, so a pre-resolve hook records who imports them. */
async function viteConsumer(dir) {
  const {build} = await import('vite');
  const builtins = [];
  const ownInputs = new Set();
  try {
    await build({
      root: dir, configFile: false, logLevel: 'silent', mode: 'production',
      build: {outDir: join(dir, 'out', 'vite'), minify: false, reportCompressedSize: false, emptyOutDir: true},
      plugins: [{
        name: 'record-node-builtins',
        enforce: 'pre',
        resolveId(source, importer) {
          if (importer != null && ownFile(realpathSafe(importer))) {
            ownInputs.add(realpathSafe(importer));
            if (NODE_BUILTIN.test(source)) builtins.push(`${source} from ${importer}`);
          }
          return null;
        },
      }],
    });
    const files = readdirSync(join(dir, 'out', 'vite', 'assets'));
    const js = files.filter(f => f.endsWith('.js')).map(f => readFileSync(join(dir, 'out', 'vite', 'assets', f), 'utf8'));
    return {ok: true, builtins, ownInputs: [...ownInputs], stubbed: js.some(s => s.includes('__vite-browser-external'))};
  } catch (e) {
    return {ok: false, builtins, errors: [e.message]};
  }
}

function realpathSafe(p) {
  try {
    return realpathSync(p.split('?')[0]);
  } catch {
    return p;
  }
}

/** Resolves to [{name, ok, message}]. */
export async function checkConsumerBundles() {
  const checks = [];
  const check = (name, ok, message = '') => checks.push({name, ok: Boolean(ok), message});
  const dirs = [];
  try {
    const app = makeConsumer('tfjs-moe');
    const control = makeConsumer('tfjs-moe/node');
    dirs.push(app, control);

    const e = await esbuildConsumer(app);
    check('esbuild bundles a consumer of tfjs-moe for the browser', e.ok, (e.errors ?? []).join('\n'));
    check('esbuild: no Node built-in imported by tfjs-moe', e.ok && e.builtins.length === 0, e.builtins.join('\n'));
    check('esbuild: the Node-only entry (io/node, src/node) stays out of the bundle',
        e.ok && e.ownInputs.length > 0 && !e.ownInputs.some(p => /[\\/](io[\\/]node|node\.js$)/.test(p)),
        (e.ownInputs ?? []).filter(p => /node/.test(p)).join('\n'));
    const ec = await esbuildConsumer(control);
    check('esbuild control: bundling tfjs-moe/node for the browser is caught (the check can fail)',
        ec.builtins.length > 0, JSON.stringify(ec).slice(0, 300));

    let viteMissing = null;
    try {
      await import('vite');
    } catch (err) {
      viteMissing = err.message;
    }
    if (viteMissing != null) {
      // vite is a devDependency; this only happens in a checkout installed without it.
      checks.push({name: 'vite', skipped: `vite is not installed (${viteMissing.split('\n')[0]})`});
      return checks;
    }
    const v = await viteConsumer(app);
    check('vite builds a consumer of tfjs-moe', v.ok, (v.errors ?? []).join('\n'));
    check('vite: no Node built-in imported by tfjs-moe', v.ok && v.builtins.length === 0, v.builtins.join('\n'));
    const vc = await viteConsumer(control);
    check('vite control: tfjs-moe/node\'s Node built-ins are seen (the check can fail)',
        vc.builtins.length > 0, JSON.stringify(vc).slice(0, 300));
  } catch (e) {
    check('bundler checks completed', false, e.stack ?? e.message);
  } finally {
    for (const d of dirs) rmSync(d, {recursive: true, force: true});
  }
  return checks;
}
