#!/usr/bin/env node
// The test command's first step (`npm test` runs it; `node scripts/setup.mjs --check` only reports): makes sure the
// system packages the suites need are installed. As root it installs the missing ones with apt-get; otherwise it
// names them and exits non-zero, so a fresh machine never fails later with an obscure adapter or linker error.
import {execFileSync} from 'node:child_process';
import {existsSync} from 'node:fs';
import {pathToFileURL} from 'node:url';

/**
 * The one table of system (Debian) packages: what each is for and how to tell it is present.
 * `present` is a file that exists once the package is installed, or a command on PATH.
 */
export const SYSTEM_PACKAGES = [
  {name: 'chromium', neededFor: 'the browser suite (headless chromium) and SwiftShader, the Vulkan driver dawn.node uses',
    present: {file: '/usr/lib/chromium/vk_swiftshader_icd.json'}},
  {name: 'libvulkan1', neededFor: 'the Vulkan loader dawn.node (the webgpu package) opens (only a recommendation of chromium)',
    present: {library: 'libvulkan.so.1'}},
  {name: 'clang-19', neededFor: 'compiling the WebAssembly SIMD kernels (relaxed SIMD needs clang 16 or newer)',
    present: {command: 'clang-19'}},
  {name: 'lld-19', neededFor: 'linking the WebAssembly kernels (wasm-ld)', present: {command: 'wasm-ld-19'}},
];

function onPath(command) {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  return dirs.some(d => existsSync(`${d}/${command}`));
}

function hasLibrary(name) {
  const dirs = ['/lib', '/usr/lib', '/lib64', '/usr/lib64', `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`,
    `/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`];
  return dirs.some(d => existsSync(`${d}/${name}`));
}

export function isPresent(pkg) {
  const p = pkg.present;
  if (p.file) return existsSync(p.file);
  if (p.library) return hasLibrary(p.library);
  return onPath(p.command);
}

export function missingPackages() {
  return SYSTEM_PACKAGES.filter(p => !isPresent(p));
}

function main() {
  const checkOnly = process.argv.includes('--check');
  let missing = missingPackages();
  if (missing.length === 0) return;
  const names = missing.map(p => p.name).join(' ');
  const why = missing.map(p => `  ${p.name}: ${p.neededFor}`).join('\n');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = onPath('apt-get');
  if (checkOnly || !isRoot || !hasApt || process.platform !== 'linux') {
    console.error(`setup: missing system packages: ${names}\n${why}\n` +
        `Install them first, e.g. \`sudo apt-get install --no-install-recommends ${names}\` (Debian/Ubuntu), ` +
        `then run the test command again.`);
    process.exit(1);
  }
  console.log(`setup: installing ${names} with apt-get`);
  const env = {...process.env, DEBIAN_FRONTEND: 'noninteractive'};
  execFileSync('apt-get', ['update', '-qq'], {stdio: 'inherit', env});
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing.map(p => p.name)],
      {stdio: ['ignore', 'ignore', 'inherit'], env});
  missing = missingPackages();
  if (missing.length) {
    console.error(`setup: still missing after apt-get: ${missing.map(p => p.name).join(' ')}`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) main();
