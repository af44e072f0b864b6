// The flag parser of `npm run demo` and `npm run demo:train`: `--name value` or `--name=value`, typed and checked
// against one table per command, so that a typo, a bad number or an unknown choice stops with a one-line message
// (exit 2) instead of a silent default or a stack trace.

/**
 * Parses `argv` against `flags`: {name: {kind: 'int' | 'number' | 'choice' | 'switch', default, choices?, min?,
 * help}}. 'int' and 'number' accept values >= `min` (default: 1 for ints, 0 exclusive for numbers); 'switch'
 * takes no value. `--help` prints the usage and exits 0. Returns {name: value} with the defaults filled in.
 */
export function parseFlags(argv, flags, {command, intro = ''}) {
  const fail = message => {
    console.error(`${command}: ${message}\n(npm run ${command} -- --help lists the flags)`);
    process.exit(2);
  };
  const opts = Object.fromEntries(Object.entries(flags).map(([k, f]) => [k, f.default]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(usage(flags, command, intro));
      process.exit(0);
    }
    if (!arg.startsWith('--')) fail(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const flag = flags[name];
    if (flag == null) fail(`unknown flag '--${name}'`);
    if (flag.kind === 'switch') {
      if (eq >= 0) fail(`--${name} takes no value`);
      opts[name] = true;
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value == null || (eq < 0 && value.startsWith('--'))) fail(`--${name} needs a value`);
    opts[name] = parseValue(name, flag, value, fail);
  }
  return opts;
}

function parseValue(name, flag, value, fail) {
  if (flag.kind === 'choice') {
    if (!flag.choices.includes(value)) fail(`--${name} must be one of ${flag.choices.join(', ')}, got '${value}'`);
    return value;
  }
  const n = Number(value);
  if (flag.kind === 'int') {
    const min = flag.min ?? 1;
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
      fail(`--${name} must be an integer >= ${min}, got '${value}'`);
    }
    return n;
  }
  if (value.trim() === '' || !Number.isFinite(n) || (flag.min != null ? n < flag.min : n <= 0)) {
    fail(`--${name} must be a number ${flag.min != null ? `>= ${flag.min}` : '> 0'}, got '${value}'`);
  }
  return n;
}

/** The `--help` text: one line per flag, its values and default. */
export function usage(flags, command, intro = '') {
  const lines = [`usage: npm run ${command} -- [flags]`];
  if (intro) lines.push(intro);
  for (const [name, f] of Object.entries(flags)) {
    const values = f.kind === 'choice' ? f.choices.join(' | ') : f.kind === 'switch' ? '' : f.kind === 'int' ? 'N' : 'X';
    const dflt = f.kind === 'switch' || f.default == null ? '' : ` (default ${f.default})`;
    lines.push(`  --${name}${values ? ` ${values}` : ''}`.padEnd(34) + `${f.help}${dflt}`);
  }
  return lines.join('\n');
}
