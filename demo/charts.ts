/** The page's two charts (chart.js, only the parts used, registered once). */
import {BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement,
  LogarithmicScale, PointElement, Tooltip} from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LogarithmicScale, LineController, LineElement,
               PointElement, Legend, Tooltip);

const PATH_COLORS: Record<string, string> = {
  'webgpu': '#3b5bdb', 'webgpu composite': '#91a7ff', 'cpu': '#2b8a3e', 'cpu composite': '#8ce99a',
};

/** The label of a log-axis tick: 1, 2 and 5 times a power of ten get one, every other tick none. */
export function logTickLabel(value: number): string | null {
  if (!(value > 0)) return null;
  const decade = 10 ** Math.floor(Math.log10(value) + 1e-9);
  const mantissa = Math.round(value / decade);
  if (![1, 2, 5].includes(mantissa) || Math.abs(value / decade - mantissa) > 1e-6) return null;
  return value >= 1 ? String(Math.round(value)) : value.toPrecision(1);
}

export class DemoCharts {
  private readonly latency: Chart<'bar'>;
  private readonly load: Chart<'bar' | 'line'>;

  constructor(latencyCanvas: HTMLCanvasElement, loadCanvas: HTMLCanvasElement) {
    // No animation: the numbers are measurements, and a screenshot must show the final bars.
    this.latency = new Chart(latencyCanvas, {
      type: 'bar',
      data: {labels: [], datasets: [{label: 'median ms per call', data: [], backgroundColor: []}]},
      // Log scale: the paths differ by orders of magnitude, and a linear axis would flatten the fast ones.
      options: {animation: false, maintainAspectRatio: false, plugins: {legend: {display: false}},
        scales: {y: {type: 'logarithmic', title: {display: true, text: 'ms (log scale)'},
          // chart.js puts a tick at every integer multiple of a power of ten: label 1, 2 and 5 of each decade
          // and drop the rest (a null label also hides its grid line), so no line is unlabeled and no label
          // overlaps its neighbour.
          ticks: {autoSkip: true, callback: value => logTickLabel(Number(value))}}}},
    });
    this.load = new Chart(loadCanvas, {
      type: 'bar',
      data: {labels: [], datasets: []},
      options: {animation: false, maintainAspectRatio: false,
        scales: {x: {title: {display: true, text: 'expert'}, ticks: {autoSkip: true, maxRotation: 0}},
          y: {beginAtZero: true, title: {display: true, text: 'tokens'}, ticks: {precision: 0}}}},
    });
  }

  showLatency(rows: Array<{label: string, ms: number}>): void {
    // Two-line labels: the path, then its number, readable without hovering.
    this.latency.data.labels = rows.map(r => [r.label, `${r.ms < 10 ? r.ms.toFixed(2) : r.ms.toFixed(0)} ms`]);
    const ds = this.latency.data.datasets[0];
    ds.data = rows.map(r => r.ms);
    ds.backgroundColor = rows.map(r => PATH_COLORS[r.label] ?? '#868e96');
    this.latency.update();
  }

  showLoad(counts: Int32Array, topK: number): void {
    const E = counts.length;
    const tokens = counts.reduce((a, b) => a + b, 0) / topK;
    this.load.data.labels = Array.from({length: E}, (_, e) => String(e));
    this.load.data.datasets = [
      {type: 'bar', label: 'tokens routed', data: Array.from(counts), backgroundColor: '#4c6ef5', order: 2},
      // A perfectly balanced router would give every expert T*k/E rows.
      {type: 'line', label: 'balanced load (T·k/E)', data: new Array(E).fill(tokens * topK / E),
        borderColor: '#f76707', borderDash: [6, 4], pointRadius: 0, borderWidth: 2, order: 1},
    ];
    this.load.update();
  }

  /** How many data points each chart holds (the page check reads this). */
  summary(): {latencyBars: number, loadBars: number, latencyTicks: Array<string | null>} {
    const ticks = this.latency.scales.y?.ticks ?? [];
    return {latencyBars: this.latency.data.datasets[0]?.data.length ?? 0,
      loadBars: this.load.data.datasets[0]?.data.length ?? 0,
      latencyTicks: ticks.map(t => (t.label == null ? null : String(t.label)))};
  }
}
