// Small statistics helpers for the benchmark: percentiles of a sample,
// medians of repeated runs, ratios and rounding for the report.

// The p-th percentile (0..100) of the values, nearest-rank on a sorted
// copy; null for an empty sample.
export function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

// p50, p99 and max of a sample, plus its size.
export function summarize(values) {
  if (values.length === 0) return { n: 0, p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (p) => sorted[Math.min(sorted.length - 1,
    Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  return { n: sorted.length, p50: at(50), p99: at(99), max: sorted[sorted.length - 1] };
}

// The median of the non-null numbers; null when there are none.
export function median(values) {
  const known = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (known.length === 0) return null;
  known.sort((a, b) => a - b);
  const mid = known.length >> 1;
  return known.length % 2 ? known[mid] : (known[mid - 1] + known[mid]) / 2;
}

// A number rounded for a table: null stays null.
export function round(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

// a / b, or null when either is missing or b is zero.
export function ratio(a, b) {
  if (a === null || b === null || a === undefined || b === undefined || b === 0) return null;
  return a / b;
}
