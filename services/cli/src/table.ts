/** A plain-text table with aligned columns: readable in a terminal and in CI logs. */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly unknown[])[],
): string {
  const cells = [
    headers.map(String),
    ...rows.map((r) => r.map((c) => (c === undefined ? "" : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number"),
  );
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [
    line(cells[0]!),
    widths.map((w) => "─".repeat(w)).join("  "),
    ...cells.slice(1).map(line),
  ].join("\n");
}
