/**
 * The runs a worker is executing, by run id.
 *
 * Not a Map: when V8 rehashes a Map's table it links the old table to the new one and leaves the old
 * entries in place. A long-lived Map with one set and one delete per run therefore keeps every finished
 * run reachable from old space for minor GCs, until the next full GC, and a burst of runs is promoted
 * whole (bench/NOTES.md, "Fourth round"). A dictionary-mode object rehashes without that link.
 */
export class ExecutingRuns<T> {
  private readonly byId: Record<string, T> = Object.create(null) as Record<string, T>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: string): T | undefined {
    return this.byId[id];
  }

  set(id: string, value: T): void {
    if (!(id in this.byId)) this.count += 1;
    this.byId[id] = value;
  }

  delete(id: string): void {
    if (!(id in this.byId)) return;
    delete this.byId[id];
    this.count -= 1;
  }

  values(): T[] {
    return Object.values(this.byId);
  }
}
