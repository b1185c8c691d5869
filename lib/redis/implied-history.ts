/**
 * A run's first history entries that the Lua library does not write while they follow from the run hash
 * (see `history` in lua/includes/01-common.lua): 'created' of a run emitted queued, its first 'claimed'
 * and then 'succeeded'. The run hash field 'hn' says how many are implied; they come before every entry
 * of the list, built exactly as the library builds them when it writes them out.
 */
export const IMPLIED_HISTORY_FIELDS = ['hn', 'ca', 'sa', 'wk', 'fa'] as const;

export function impliedHistory([count, createdAt, startedAt, workerId, finishedAt]: (string | null)[]): string[] {
  const implied = Number(count ?? 0);
  if (!(implied >= 1)) return [];
  const entries = [`{"type":"created","at":${Number(createdAt)},"status":"queued"}`];
  if (implied >= 2) entries.push(`{"type":"claimed","at":${Number(startedAt)},"attempt":1,"workerId":${JSON.stringify(workerId ?? '')}}`);
  if (implied >= 3) entries.push(`{"type":"succeeded","at":${Number(finishedAt)}}`);
  return entries;
}
