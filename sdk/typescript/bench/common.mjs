// What the benchmarks share: their command line, percentiles and the load average.
import { loadavg } from 'node:os';

export const args = process.argv.slice(2);

/** The value after `--name`, or `def`. */
export function opt(name, def) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
}

/** The `p`th percentile of ascending `sorted`. */
export const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** The 1, 5 and 15 minute load averages. */
export const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
