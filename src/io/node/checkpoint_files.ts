/// <reference types="node" />
/**
 * Which files a checkpoint read may open, and how: a user names a folder, so only regular files whose real path
 * (symlinks resolved) lies inside it are read, plus, for a Hugging Face cache snapshot (<repo>/snapshots/<rev>/x
 * -> ../../blobs/<hash>), the repo's cache folder holding snapshots/ and blobs/. FIFOs, devices and folders are
 * refused from a non-blocking open's fstat, before any read (a blocking open of a FIFO waits for a writer forever).
 */
import {constants} from 'node:fs';
import {FileHandle, open, realpath, stat} from 'node:fs/promises';
import * as path from 'node:path';

type Fail = (what: string) => never;

function kindOf(s: {isDirectory(): boolean, isFIFO(): boolean, isCharacterDevice(): boolean, isBlockDevice(): boolean,
  isSocket(): boolean}): string {
  if (s.isDirectory()) return 'a folder';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  if (s.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Opens `file` for reading only if it is a regular file; anything else is refused before a byte is read. */
export async function openRegularFile(file: string, what: string, fail: Fail): Promise<FileHandle> {
  // O_NONBLOCK: opening a FIFO without a writer returns at once instead of blocking; regular files ignore it.
  const flags = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);
  const handle = await open(file, flags).catch((e: unknown) => fail(`cannot read ${what} '${file}': ${
      (e as NodeJS.ErrnoException).code ?? (e as Error).message}`));
  try {
    const s = await handle.stat();
    if (!s.isFile()) fail(`${what} '${file}' is ${kindOf(s)}, not a regular file`);
    return handle;
  } catch (e) {
    await handle.close();
    throw e;
  }
}

function isInside(file: string, root: string): boolean {
  const rel = path.relative(root, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export class CheckpointFolder {
  private constructor(readonly dir: string, private readonly roots: string[], private readonly allowOutside: boolean) {}

  static async resolve(dir: string, allowOutside: boolean, fail: Fail): Promise<CheckpointFolder> {
    const real = await realpath(dir).catch((e: unknown) => fail(`cannot open the checkpoint folder '${dir}': ${
        (e as NodeJS.ErrnoException).code ?? (e as Error).message}`));
    const s = await stat(real);
    if (!s.isDirectory()) fail(`the checkpoint folder '${dir}' is ${s.isFile() ? 'a file' : kindOf(s)}, not a folder`);
    const roots = [real];
    // Hugging Face's cache: <repo>/snapshots/<rev>/ holds symlinks into <repo>/blobs/.
    if (path.basename(path.dirname(real)) === 'snapshots') {
      const repo = path.dirname(path.dirname(real));
      const blobs = await stat(path.join(repo, 'blobs')).catch(() => null);
      if (blobs?.isDirectory()) roots.push(repo);
    }
    return new CheckpointFolder(dir, roots, allowOutside);
  }

  /** Opens a file of the checkpoint (a path under `dir`) after checking where it really is. */
  async open(file: string, what: string, fail: Fail): Promise<FileHandle> {
    const real = await realpath(file).catch((e: unknown) => fail(`cannot read ${what} '${file}': ${
        (e as NodeJS.ErrnoException).code ?? (e as Error).message}`));
    if (!this.allowOutside && !this.roots.some(root => isInside(real, root))) {
      fail(`${what} '${file}' resolves to '${real}', outside the checkpoint folder '${this.dir}'` +
          `${this.roots.length > 1 ? ` and its Hugging Face cache folder '${this.roots[1]}'` : ''}; ` +
          'pass {allowOutsideFolder: true} to read it anyway');
    }
    return openRegularFile(real, what, fail);
  }
}
