/** The page's two charts (chart.js, only the parts used, registered once). */
import {BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement,
  LogarithmicScale, PointElement, Tooltip} from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LogarithmicScale, LineController, LineElement,
               PointElement, Legend, Tooltip);

const PATH_COLORS: Record<string, string> = {
  'webgpu': '#3b5bdb', 'webgpu composite': '#91a7ff', 'cpu': '#2b8a3e', 'cpu composite': '#8ce99a',
};

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
        scales: {y: {type: 'logarithmic', title: {display: true, text: 'ms (log scale)'}}}},
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
  summary(): {latencyBars: number, loadBars: number} {
    return {latencyBars: this.latency.data.datasets[0]?.data.length ?? 0,
      loadBars: this.load.data.datasets[0]?.data.length ?? 0};
  }
}
