/** Aligned text tables for people: one line a row, the flexible column cut to fit the terminal. */
export interface Column {
  header: string;
  /** The column that gives up width (with '…') when the table is wider than the terminal. */
  flex?: boolean;
  alignRight?: boolean;
}

const GAP = '  ';

export function renderTable(columns: Column[], rows: string[][], width: number): string {
  const cells = rows.map((row) => row.map(oneLine));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((row) => row[i].length)));
  const total = widths.reduce((sum, w) => sum + w, 0) + GAP.length * (columns.length - 1);
  const flex = columns.findIndex((column) => column.flex);
  if (total > width && flex >= 0) {
    widths[flex] = Math.max(columns[flex].header.length, 12, widths[flex] - (total - width));
  }
  const line = (row: string[]) =>
    row
      .map((cell, i) => {
        const text = truncate(cell, widths[i]);
        if (i === row.length - 1 && !columns[i].alignRight) return text;
        return columns[i].alignRight ? text.padStart(widths[i]) : text.padEnd(widths[i]);
      })
      .join(GAP)
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n');
}

/** Label: value lines, labels aligned. */
export function renderFields(fields: [string, string | undefined][]): string {
  const shown = fields.filter((f): f is [string, string] => f[1] !== undefined && f[1] !== '');
  const labelWidth = Math.max(...shown.map(([label]) => label.length)) + 1;
  return shown.map(([label, value]) => `${`${label}:`.padEnd(labelWidth)} ${value}`).join('\n');
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}
