/**
 * `npm run demo` and `npm run demo:train` as a newcomer meets them: one flag parser (bad values, unknown flags and
 * bad choices stop with a one-line message and exit 2, no stack), WebGPU through initWebGPUForNode (no Vulkan
 * loader noise, a software adapter named as such), the CUDA addon's paths listed once, dist rebuilt only when stale.
 */
import {execFile} from 'node:child_process';
import {existsSync} from 'node:fs';
import {promisify} from 'node:util';

const exec = promisify(execFile);
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';

async function run(script: string, args: string[]): Promise<{code: number, stdout: string, stderr: string}> {
  try {
    const {stdout, stderr} = await exec(process.execPath, [script, ...args], {maxBuffer: 16 << 20, timeout: 120_000});
    return {code: 0, stdout, stderr};
  } catch (e) {
    const err = e as {code: number, stdout: string, stderr: string};
    return {code: err.code, stdout: err.stdout, stderr: err.stderr};
  }
}

describe('demo flags (one parser for demo and demo:train)', () => {
  const bad: Array<[string, string[], RegExp]> = [
    ['scripts/demo-train.mjs', ['--epochs', 'abc'], /--epochs must be an integer >= 1, got 'abc'/],
    ['scripts/demo-train.mjs', ['--epochs', '-3'], /--epochs must be an integer >= 1, got '-3'/],
    ['scripts/demo-train.mjs', ['--epoch', '3'], /unknown flag '--epoch'/],
    ['scripts/demo-train.mjs', ['--balance', 'bogus'], /--balance must be one of none, aux, auxfree, got 'bogus'/],
    ['scripts/demo-train.mjs', ['--bias-rate', 'x'], /--bias-rate must be a number > 0, got 'x'/],
    ['scripts/demo-train.mjs', ['--tokens'], /--tokens needs a value/],
    ['scripts/demo.mjs', ['--model', 'gpt5'], /--model must be one of qwen3, olmoe, mixtral, deepseek-v3, tiny, got 'gpt5'/],
    ['scripts/demo.mjs', ['--iters=0'], /--iters must be an integer >= 1, got '0'/],
    ['scripts/demo.mjs', ['stray'], /unexpected argument 'stray'/],
  ];
  for (const [script, args, message] of bad) {
    it(`${script.replace('scripts/', '')} ${args.join(' ')}: exit 2 with a one-line reason`, async () => {
      const r = await run(script, args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);  // no stack trace
    }, 120_000);
  }

  it('--help lists every flag of both demos and exits 0', async () => {
    const train = await run('scripts/demo-train.mjs', ['--help']);
    expect(train.code).toBe(0);
    for (const f of ['--epochs', '--balance', '--tf-backend', '--aux-coef', '--no-baseline']) expect(train.stdout).toContain(f);
    const demo = await run('scripts/demo.mjs', ['--help']);
    expect(demo.code).toBe(0);
    for (const f of ['--model', '--scale', '--backend']) expect(demo.stdout).toContain(f);
  }, 120_000);
});

describe('npm run demo output', () => {
  it('auto on a machine without a GPU: no Vulkan loader noise, software adapter named, addon paths once', async () => {
    const r = await run('scripts/demo.mjs', ['--model', 'tiny', '--iters', '1', '--tokens', '4']);
    expect(r.code).withContext(r.stderr).toBe(0);
    const all = r.stdout + r.stderr;
    expect(all).not.toMatch(/vkCreateInstance|Found no drivers|home\/runner/);
    if (existsSync(SWIFTSHADER)) {
      // dawn finds SwiftShader; auto does not time a CPU emulation of a GPU, and says how to ask for it.
      expect(all).toMatch(/skipped webgpu: only a software adapter \(.*SwiftShader.*\); --backend webgpu uses it/i);
    }
    const looked = /looked for (.*?)( \(|\n|$)/.exec(r.stdout);
    if (looked) {
      const paths = looked[1].split(', ');
      expect(new Set(paths).size).withContext(looked[1]).toBe(paths.length);
    }
    expect(r.stdout).toContain('check passed');
  }, 120_000);

  it('--backend webgpu runs on SwiftShader', async () => {
    if (!existsSync(SWIFTSHADER)) pending('no SwiftShader here (Debian chromium; the test command installs it)');
    const r = await run('scripts/demo.mjs', ['--model', 'tiny', '--iters', '1', '--tokens', '4', '--backend', 'webgpu']);
    expect(r.code).withContext(r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backend used: +kernels:webgpu \(.*SwiftShader.*software adapter/i);
  }, 120_000);

  it('builds dist only when a source is newer (the demo scripts use build --if-stale)', async () => {
    const r = await run('scripts/build.mjs', ['--if-stale']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('build: dist is up to date');
  }, 120_000);
});

describe('npm run demo:train', () => {
  it('compares the MoE with same-compute and same-size dense MLPs on held-out MSE and explains it', async () => {
    const r = await run('scripts/demo-train.mjs', ['--epochs', '2', '--tokens', '128']);
    expect(r.code).withContext(r.stderr).toBe(0);
    expect(r.stdout).toMatch(/test MSE \(held-out tokens; lower is better\):/);
    expect(r.stdout).toMatch(/dense width 8 \(same compute per token\) +\d/);
    expect(r.stdout).toMatch(/dense width 64 \(same parameter count\) +\d/);
    expect(r.stdout).toContain('Reading the numbers:');
  }, 120_000);
});
