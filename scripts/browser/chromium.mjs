// Launches Debian's headless chromium with WebGPU on SwiftShader (the flags verified in shared/docs/tfjs-notes.md)
// in a fresh profile, driven by playwright-core. The caller closes it with the returned close().
import {mkdtempSync, rmSync, existsSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** A persistent context in a throw-away --user-data-dir (playwright passes the directory as that flag). */
export async function launchChromium({viewport = {width: 1280, height: 900}} = {}) {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`chromium not found at ${CHROMIUM_PATH} (apt-get install chromium, or set CHROMIUM_PATH)`);
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'tfjs-moe-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    // CHROMIUM_FLAGS_EXTRA (space-separated) adds flags, e.g. a real adapter instead of SwiftShader.
    args: [...CHROMIUM_FLAGS, ...(process.env.CHROMIUM_FLAGS_EXTRA ?? '').split(' ').filter(Boolean)],
    viewport,
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(userDataDir, {recursive: true, force: true});
  };
  return {context, close};
}
