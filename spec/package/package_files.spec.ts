/**
 * What a newcomer reads before installing: the license, package.json's metadata, the test command's set-up step,
 * and the CI entry point. (The packed tarball itself is checked by scripts/package-check.mjs, in the test command.)
 */
import {execFileSync} from 'node:child_process';
import {readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));

function run(script: string, args: string[], env: Record<string, string | undefined> = {}): {code: number, out: string} {
  try {
    const out = execFileSync(process.execPath, [script, ...args], {encoding: 'utf8', stdio: 'pipe', env: {...process.env, ...env}});
    return {code: 0, out};
  } catch (e) {
    const err = e as {status: number, stdout: string, stderr: string};
    return {code: err.status, out: `${err.stdout}${err.stderr}`};
  }
}

/** Source files that register something with tfjs at load time (kernels, gradients, classes, executors). */
function registeringFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, {withFileTypes: true})) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...registeringFiles(path));
    // A top-level register call (or a top-level loop of them), as the registering modules are written.
    else if (entry.name.endsWith('.ts') &&
             /^(?:for \(.*\) )?(?:tf\.)?(?:serialization\.)?register\w*\(|^ {2}registerKernel\(config\);/m
                 .test(readFileSync(path, 'utf8'))) {
      out.push(path);
    }
  }
  return out;
}

/** Whether a package.json sideEffects glob (only `*` within one path segment) matches `path`. */
function globMatches(glob: string, path: string): boolean {
  const re = new RegExp(`^${glob.replace(/^\.\//, '').replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
  return re.test(path);
}

describe('package metadata', () => {
  it('ships the Apache-2.0 text that package.json names', () => {
    expect(pkg.license).toBe('Apache-2.0');
    const license = readFileSync('LICENSE', 'utf8');
    expect(license).toMatch(/Apache License\s+Version 2\.0, January 2004/);
    expect(license).toContain('END OF TERMS AND CONDITIONS');
    expect(pkg.files).toContain('LICENSE');
  });

  it('has repository, homepage, bugs, keywords and a changelog', () => {
    expect(pkg.repository?.url).toMatch(/^git\+https:\/\//);
    expect(pkg.homepage).toMatch(/^https:\/\//);
    expect(pkg.bugs?.url).toMatch(/^https:\/\//);
    expect(pkg.keywords).toEqual(jasmine.arrayContaining(['tensorflow', 'mixture-of-experts', 'webgpu']));
    expect(readFileSync('CHANGELOG.md', 'utf8')).toMatch(/^# Changelog/);
    for (const f of ['CHANGELOG.md', 'BENCHMARKS.md', 'docs', 'README.md']) expect(pkg.files).withContext(f).toContain(f);
  });

  it('builds dist before packing and ships the CUDA build as a bin', () => {
    expect(pkg.scripts.prepack).toContain('scripts/build.mjs');
    expect(pkg.bin['tfjs-moe-build-cuda']).toBe('scripts/build-cuda.mjs');
    expect(pkg.files).toContain('scripts/build-cuda.mjs');
    expect(readFileSync('scripts/build-cuda.mjs', 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
  });

  it('engines says the Node version the CUDA loader needs (process.getBuiltinModule)', () => {
    expect(pkg.engines.node).toBe('>=20.16');
    const loader = readFileSync('src/kernels/cuda/loader.ts', 'utf8');
    expect(loader).toContain("code: 'node-too-old'");
    expect(loader).toContain('Node >= 20.16');
  });

  it('limits sideEffects to files that register with tfjs, and lists every one of them', () => {
    expect(Array.isArray(pkg.sideEffects)).toBe(true);
    const files = registeringFiles('src').map(f => f.replace(/\\/g, '/'));
    expect(files).toEqual(jasmine.arrayContaining(['src/register_all.ts', 'src/layers/fused_moe.ts']));
    for (const f of files) {
      const dist = `dist/esm/${f.slice('src/'.length).replace(/\.ts$/, '.js')}`;
      expect(pkg.sideEffects.some((g: string) => globMatches(g, dist))).withContext(dist).toBe(true);
      expect(pkg.sideEffects.some((g: string) => globMatches(g, f))).withContext(f).toBe(true);
    }
    expect(pkg.sideEffects.some((g: string) => globMatches(g, 'dist/esm/ops/batched_gemm.js'))).toBe(false);
    // Limited: every dist/esm pattern is an entry (which imports the registrations) or a registering file.
    const entries = ['dist/esm/index.js', 'dist/esm/internal.js'];
    const registering = files.map(f => `dist/esm/${f.slice('src/'.length).replace(/\.ts$/, '.js')}`);
    for (const g of pkg.sideEffects.filter((x: string) => x.startsWith('./dist/esm/'))) {
      expect([...entries, ...registering].some(f => globMatches(g, f))).withContext(g).toBe(true);
    }
    // The other patterns name folders that are not packed (the repository's own bundles of specs, benchmarks and
    // the demo import spec files for their side effects).
    const other = pkg.sideEffects.filter((g: string) => !/^\.\/(dist|src)\//.test(g));
    expect(other).toEqual(['./spec/**', './bench/**', './demo/**', './scripts/**']);
    for (const g of other) expect(pkg.files).not.toContain(g.slice(2, -3));
  });

  it('types every entry for nodenext (import and require), node10 (typesVersions) and the browser file', () => {
    for (const entry of ['.', './node', './internal']) {
      const e = pkg.exports[entry];
      expect(e.import.types).withContext(entry).toMatch(/\.d\.ts$/);
      expect(e.require.types).withContext(entry).toMatch(/\.d\.cts$/);
    }
    expect(pkg.exports['./browser'].types).toBe('./dist/esm/index.d.ts');
    expect(pkg.typesVersions['*'].node).toEqual(['dist/esm/node.d.ts']);
  });
});

describe('README', () => {
  const readme = readFileSync('README.md', 'utf8');
  const install = readme.slice(readme.indexOf('## Install'), readme.indexOf('## A first example'));

  it('says what to install for cpu, WebGPU in the browser, WebGPU in Node and CUDA', () => {
    expect(install).toMatch(/npm install tfjs-moe @tensorflow\/tfjs +# cpu/);
    expect(install).toMatch(/npm install tfjs-moe @tensorflow\/tfjs @tensorflow\/tfjs-backend-webgpu +# WebGPU in the browser/);
    expect(install).toMatch(/npm install tfjs-moe @tensorflow\/tfjs @tensorflow\/tfjs-backend-webgpu webgpu +# WebGPU in Node/);
    expect(install).toMatch(/npx tfjs-moe-build-cuda +# CUDA/);
    expect(install).toContain('No backend found in registry');
  });

  it('links its specification and says what the full-size layer example costs', () => {
    expect(readme).toContain('[docs/semantics.md](docs/semantics.md)');
    expect(readme).not.toMatch(/the semantics doc\b/);
    expect(readme).toMatch(/about 2\.4 GB at the peak/);
    expect(readme).not.toContain('until its kernels land');
  });
});

describe('the test command', () => {
  it('starts with the set-up step, and CI runs exactly the README\'s command', () => {
    expect(pkg.scripts.test).toMatch(/^node scripts\/setup\.mjs && /);
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).toContain('Tests: `npm ci && npm test`');
    const ci = readFileSync('.ci/run', 'utf8').split('\n').filter(l => l && !l.startsWith('#'));
    expect(ci[ci.length - 1]).toBe('npm ci && npm test');
    expect(ci.join('\n')).not.toContain('apt-get');
  });

  it('has one table of the system packages it needs: chromium, libvulkan1, clang-19, lld-19', () => {
    const text = readFileSync('scripts/setup.mjs', 'utf8');
    for (const name of ['chromium', 'libvulkan1', 'clang-19', 'lld-19']) expect(text).toContain(`{name: '${name}'`);
  });

  it('set-up names the missing packages and stops where it cannot install them', () => {
    // An empty PATH hides clang and wasm-ld (and apt-get): what a machine without them looks like.
    const {code, out} = run('scripts/setup.mjs', ['--check'], {PATH: ''});
    expect(code).toBe(1);
    expect(out).toMatch(/setup: missing system packages: .*clang-19 lld-19/);
    expect(out).toContain('apt-get install --no-install-recommends');
  });
});
