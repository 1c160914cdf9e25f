// A plain SVG bar chart of W1-W3, one panel per workload, so the results
// can be seen at a glance from the README without a plotting library.

export interface ChartRow {
  label: string
  /** W1 acquire p50, µs (lower is better). */
  w1: number
  /** W2 pairs per second (higher is better). */
  w2: number
  /** W3 hand-over p50, ms (lower is better). */
  w3: number
}

const PANEL_WIDTH = 300
const BAR_HEIGHT = 18
const LABEL_WIDTH = 210

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;')
}

function panel(rows: ChartRow[], pick: (row: ChartRow) => number, title: string, unit: string, x: number): string {
  const max = Math.max(...rows.map(pick).filter((v) => !Number.isNaN(v)), 1)
  const parts = [`<text x="${x}" y="20" font-weight="bold">${escape(title)}</text>`]
  rows.forEach((row, i) => {
    const value = pick(row)
    const y = 34 + i * (BAR_HEIGHT + 8)
    const width = Number.isNaN(value) ? 0 : Math.max(1, (value / max) * (PANEL_WIDTH - 70))
    const fill = i === 0 ? '#2f7d32' : '#8a8a8a'
    parts.push(`<rect x="${x}" y="${y}" width="${width.toFixed(1)}" height="${BAR_HEIGHT}" fill="${fill}"/>`)
    parts.push(`<text x="${x + width + 4}" y="${y + 13}">${Number.isNaN(value) ? 'n/a' : value.toFixed(value < 10 ? 1 : 0)} ${unit}</text>`)
  })
  return parts.join('\n')
}

export function renderChart(rows: ChartRow[]): string {
  const height = 44 + rows.length * (BAR_HEIGHT + 8)
  const width = LABEL_WIDTH + 3 * (PANEL_WIDTH + 20)
  const labels = rows.map((row, i) => `<text x="0" y="${34 + i * (BAR_HEIGHT + 8) + 13}">${escape(row.label)}</text>`)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...labels,
    panel(rows, (r) => r.w1, 'W1 acquire p50 (lower is better)', 'µs', LABEL_WIDTH),
    panel(rows, (r) => r.w2, 'W2 pairs/s at 64 (higher is better)', '/s', LABEL_WIDTH + PANEL_WIDTH + 20),
    panel(rows, (r) => r.w3, 'W3 hand-over p50 (lower is better)', 'ms', LABEL_WIDTH + 2 * (PANEL_WIDTH + 20)),
    '</svg>',
    '',
  ].join('\n')
}
