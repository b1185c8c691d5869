import type { WorkflowRegistry } from '../discovery/workflow-registry.js';
import type { ClaimWorkflowSpec } from '../redis/workflow-store.js';

/**
 * The order in which a claim asks for a shard's workflows: those whose queue it is first, rotated from
 * claim to claim for fairness, then the others this app has (their runs may be sent to this queue by
 * emit's `queue` option).
 */
export class ClaimRotations {
  private rotation = 0;
  private rotationsFor?: { registered: number; byQueue: Map<string | undefined, ClaimWorkflowSpec[][]> };

  /** `version`: this deployment's (WorkflowModuleOptions.version), which its pinned workflows claim. */
  constructor(
    private readonly registry: WorkflowRegistry,
    private readonly version?: string,
  ) {}

  /** The workflows to claim in the next claim of a shard of `queue` (undefined: the event shard). */
  next(queue: string | undefined): ClaimWorkflowSpec[] {
    const rotations = this.rotations(queue);
    this.rotation = (this.rotation + 1) % rotations.length;
    return rotations[this.rotation];
  }

  /** Each rotation of a queue's claim order, made once (a completing run asks for one). */
  private rotations(queue: string | undefined): ClaimWorkflowSpec[][] {
    if (this.rotationsFor?.registered !== this.registry.size) this.rotationsFor = { registered: this.registry.size, byQueue: new Map() };
    const known = this.rotationsFor.byQueue.get(queue);
    if (known) return known;
    const all = this.registry.all().filter((w) => w.instance);
    const home = all.filter((w) => w.options.queue === queue);
    // (a workflow with maxConcurrency or flow control keeps all its runs in its own queue)
    const away = all.filter((w) => w.options.queue !== queue && w.options.maxConcurrency === 0 && !w.options.flow);
    const spec = (w: (typeof all)[number]): ClaimWorkflowSpec => ({
      name: w.name,
      maxConcurrency: w.options.maxConcurrency,
      maxAttempts: w.options.maxAttempts,
      timeoutMs: w.options.timeoutMs,
      // Only a claim of a rate-limited or fair key's run changes its key (flow_claimed): a concurrency-only
      // workflow's claims skip the read of the run's flow fields. A run emitted while the workflow had a
      // rate limit or fairness and claimed after they were removed keeps its key's turn until it ends.
      ...(w.options.flow && (w.options.flow.rateLimit > 0 || w.options.flow.fairness) ? { flow: true } : {}),
      ...(w.options.versioning === 'pinned' && this.version ? { pinnedVersion: this.version } : {}),
    });
    const rotations = Array.from({ length: Math.max(1, home.length) }, (_, r) => [...home.slice(r), ...home.slice(0, r), ...away].map(spec));
    this.rotationsFor.byQueue.set(queue, rotations);
    return rotations;
  }
}
