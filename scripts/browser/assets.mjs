// Builds what the browser pages load, under build/browser/:
//   vendor/*.js      tfjs packages as ES modules, each importing '@tensorflow/tfjs-core' (one shared instance)
//   tfjs-moe/        the package's own browser bundle (dist/browser, made by `npm run build`), tfjs as a peer import
//   jasmine/         jasmine-core's standalone browser files
//   specs/           the browser spec page and bundle (spec/browser/entry.ts)
//   demo/            the demo page (demo/)
// Pages resolve bare imports with IMPORT_MAP, the way a user's page without a bundler would load tfjs-moe.
import {copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join, resolve} from 'node:path';
import {build} from 'esbuild';

export const OUT = resolve('build/browser');
const require = createRequire(join(process.cwd(), 'package.json'));

/** Bump when the vendor build below changes, so that a cached vendor/ is rebuilt. */
const VENDOR_RECIPE = 4;
const VENDOR = ['tfjs-core', 'tfjs-backend-cpu', 'tfjs-backend-webgpu', 'tfjs-layers'];

export const IMPORT_MAP = {
  imports: {
    ...Object.fromEntries(VENDOR.map(p => [`@tensorflow/${p}`, `/vendor/${p}.js`])),
    'tfjs-moe': '/tfjs-moe/tfjs-moe.esm.js',
    'tfjs-moe/internal': '/tfjs-moe/tfjs-moe-internal.esm.js',
  },
};

export function importMapTag(extra = {}) {
  return `<script type="importmap">${JSON.stringify({imports: {...IMPORT_MAP.imports, ...extra}})}</script>`;
}

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  sourcemap: true,
  logLevel: 'warning',
};

/**
 * tfjs's chained ops (t.reshape(), ...) come with @tensorflow/tfjs, which the Node specs load: the spec page maps
 * tfjs-core to a build that registers them too. The demo page does not: it shows tfjs-moe working on tfjs-core alone.
 */
const CHAINED_OPS = '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
const CORES = ['tfjs-core', 'tfjs-core-chained'];

async function buildVendor() {
  const dir = join(OUT, 'vendor');
  mkdirSync(dir, {recursive: true});
  const stamp = join(dir, 'versions.json');
  const versions = JSON.stringify([VENDOR_RECIPE, ...VENDOR.map(p => [p, require(`@tensorflow/${p}/package.json`).version])]);
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === versions) return;  // unchanged: skip ~4 MB of bundling
  // core's gradients are registered in its module, since tfjs-layers imports them by a deep path.
  const core = `export * from '@tensorflow/tfjs-core'; import '@tensorflow/tfjs-core/dist/register_all_gradients';`;
  const modules = [
    ...VENDOR.filter(p => p !== 'tfjs-core').map(p => ({name: p, source: `export * from '@tensorflow/${p}';`})),
    {name: 'tfjs-core', source: core},
    {name: 'tfjs-core-chained', source: `${core} import '${CHAINED_OPS}';`},
  ];
  for (const {name, source} of modules) {
    await build({
      ...common,
      // Re-exporting through stdin lets esbuild resolve the package as a browser bundler would ("module" field).
      stdin: {contents: source, resolveDir: process.cwd(), loader: 'js'},
      outfile: join(dir, `${name}.js`),
      // Every module but core itself imports core (deep paths included) from the import map, so that all of them
      // share one engine and one kernel registry.
      plugins: CORES.includes(name) ? [] : [{
        name: 'tfjs-core-peer',
        setup(b) {
          b.onResolve({filter: /^@tensorflow\/tfjs-core(\/.*)?$/}, () => ({path: '@tensorflow/tfjs-core', external: true}));
        },
      }],
    });
  }
  writeFileSync(stamp, versions);
}

function copyPackageBundle() {
  const src = resolve('dist/browser/tfjs-moe.esm.js');
  if (!existsSync(src)) throw new Error(`${src} is missing: run \`npm run build\` first`);
  // The root and the internals entry share chunks (one implementation): copy the whole folder.
  const dir = join(OUT, 'tfjs-moe');
  rmSync(dir, {recursive: true, force: true});
  cpSync(resolve('dist/browser'), dir, {recursive: true});
}

function copyJasmine() {
  const dir = join(OUT, 'jasmine');
  mkdirSync(dir, {recursive: true});
  const lib = dirname(require.resolve('jasmine-core/lib/jasmine-core/jasmine.js'));
  copyFileSync(join(lib, 'jasmine.js'), join(dir, 'jasmine.js'));
  // jasmine-core's boot0.js also wants its HTML reporter; the suite only needs the globals (describe, it, ...)
  // before the spec module is evaluated. scripts/test-browser.mjs reports through spec/browser/jasmine_boot.ts.
  writeFileSync(join(dir, 'boot.js'), `(function () {
  const jasmine = jasmineRequire.core(jasmineRequire);
  Object.assign(window, jasmineRequire.interface(jasmine, jasmine.getEnv()));
})();
`);
}

/**
 * The specs are bundled from their TypeScript sources; the package and tfjs stay external (import map), so the
 * specs exercise the shipped browser bundle. The Node-only WebGPU setup of spec/webgpu (dawn.node) is swapped for
 * its browser counterpart.
 */
async function buildSpecs() {
  const dir = join(OUT, 'specs');
  mkdirSync(dir, {recursive: true});
  const browserEnv = resolve('spec/browser/webgpu_env_browser.ts');
  await build({
    ...common,
    entryPoints: ['spec/browser/entry.ts'],
    outfile: join(dir, 'specs.js'),
    external: ['@tensorflow/*', 'tfjs-moe'],
    plugins: [{
      name: 'browser-webgpu-env',
      setup(b) {
        b.onResolve({filter: /(^|\/)webgpu_env\.js$/}, () => ({path: browserEnv}));
      },
    }],
  });
  writeFileSync(join(dir, 'index.html'), `<!doctype html>
<html><head><meta charset="utf-8"><title>tfjs-moe browser specs</title>
${importMapTag({'@tensorflow/tfjs-core': '/vendor/tfjs-core-chained.js'})}
<script src="/jasmine/jasmine.js"></script>
<script src="/jasmine/boot.js"></script>
</head><body><pre id="log"></pre>
<script type="module" src="./specs.js"></script>
</body></html>
`);
}

async function buildDemo() {
  const dir = join(OUT, 'demo');
  mkdirSync(dir, {recursive: true});
  await build({
    ...common,
    entryPoints: ['demo/main.ts'],
    outfile: join(dir, 'demo.js'),
    // chart.js is the page's own dependency and is bundled in; tfjs and tfjs-moe come from the import map.
    external: ['@tensorflow/*', 'tfjs-moe'],
  });
  copyFileSync('demo/style.css', join(dir, 'style.css'));
  const html = readFileSync('demo/index.html', 'utf8').replace('<!-- IMPORT_MAP -->', importMapTag());
  writeFileSync(join(dir, 'index.html'), html);
}

/** what: which pages to build ('specs', 'demo'). */
export async function buildBrowserAssets(what = ['specs', 'demo']) {
  mkdirSync(OUT, {recursive: true});
  await buildVendor();
  copyPackageBundle();
  if (what.includes('specs')) {
    copyJasmine();
    await buildSpecs();
  }
  if (what.includes('demo')) await buildDemo();
  return OUT;
}
