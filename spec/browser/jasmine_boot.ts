/**
 * Runs the specs registered so far in the page's jasmine (jasmine-core's boot0.js made describe/it global) and
 * reports every result to the driver: window.__moeReport(event) when playwright exposed it, and the page's log.
 */
export interface SpecEvent {
  kind: 'spec' | 'suite-failure' | 'done';
  name?: string;
  status?: string;
  messages?: string[];
  pendingReason?: string;
  overallStatus?: string;
  ms?: number;
}

interface JasmineResult {
  fullName: string;
  status: string;
  pendingReason?: string;
  failedExpectations: Array<{message: string, stack?: string}>;
}

export async function runJasmine(): Promise<void> {
  const w = window as unknown as {__moeReport?: (e: SpecEvent) => Promise<void>, __moeDone?: SpecEvent};
  const log = document.getElementById('log');
  const send = (e: SpecEvent) => {
    if (log != null && e.kind !== 'done') log.textContent += `${e.status ?? e.kind}: ${e.name}\n`;
    void w.__moeReport?.(e);
  };
  const j = (globalThis as unknown as {jasmine: {
    DEFAULT_TIMEOUT_INTERVAL: number,
    getEnv(): {
      configure(c: object): void,
      addReporter(r: object): void,
      execute(): Promise<{overallStatus: string, failedExpectations: Array<{message: string}>}>,
    },
  }}).jasmine;
  // SwiftShader compiles each new pipeline on the CPU: seconds per shader on a busy machine.
  j.DEFAULT_TIMEOUT_INTERVAL = 300_000;
  const env = j.getEnv();
  // ?grep=text runs only the specs whose full name contains text (targeted runs: npm run test:browser -- --grep text).
  const grep = new URLSearchParams(location.search).get('grep');
  env.configure({random: false, stopSpecOnExpectationFailure: false,
    specFilter: (spec: {getFullName(): string}) => grep == null || spec.getFullName().includes(grep)});
  let started = performance.now();
  env.addReporter({
    specStarted() {
      started = performance.now();
    },
    specDone(r: JasmineResult) {
      send({kind: 'spec', name: r.fullName, status: r.status, pendingReason: r.pendingReason,
        messages: r.failedExpectations.map(e => `${e.message}\n${(e.stack ?? '').split('\n').slice(0, 4).join('\n')}`),
        ms: performance.now() - started});
    },
    suiteDone(r: JasmineResult) {
      if (r.failedExpectations.length > 0) {
        send({kind: 'suite-failure', name: r.fullName, messages: r.failedExpectations.map(e => e.message)});
      }
    },
  });
  const result = await env.execute();
  for (const e of result.failedExpectations) send({kind: 'suite-failure', name: '(global)', messages: [e.message]});
  const done: SpecEvent = {kind: 'done', overallStatus: result.overallStatus};
  w.__moeDone = done;
  send(done);
}
