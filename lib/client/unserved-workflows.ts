import { Logger, type Type } from '@nestjs/common';
import { hasOnFailureMethod, registryEntry } from '../discovery/registry-entry.js';
import type { ResolvedWorkflowOptions } from '../discovery/workflow-definition.js';
import { errorMessage } from '../errors/error-codec.js';
import type { WorkflowStore } from '../redis/workflow-store.js';

/** A workflow as an emit knows it: with its class and options when the app has the class. */
export interface EmittedWorkflow {
  name: string;
  type?: Type;
  options: Partial<ResolvedWorkflowOptions>;
}

/**
 * Emits of workflows that no live worker serves. Their runs wait in 'queued' (using no attempts) until a
 * worker that has the class starts. The registry in Redis, which listings, stats and the dashboard read,
 * was written only by workers, so such runs were invisible everywhere but getRun: the first such emit
 * of a class registers the workflow (unless a worker has), and the app warns once per workflow, saying
 * what to do.
 */
export class UnservedWorkflows {
  private readonly logger = new Logger('WorkflowClient');
  private readonly seen = new Set<string>();

  constructor(private readonly store: WorkflowStore) {}

  /** Called before an emit that no live worker serves; settles once the workflow is registered (the first time). */
  emitting(workflow: EmittedWorkflow): Promise<void> | undefined {
    if (this.seen.has(workflow.name)) return undefined;
    this.seen.add(workflow.name);
    this.logger.warn(
      `No live worker serves workflow '${workflow.name}': its runs wait in 'queued' (listed and counted, using no attempts) until one does. ` +
        `Add ${workflow.type?.name ?? 'its class'} to the providers of an app that runs a worker (WorkflowModule.forRoot() without worker: false).`,
    );
    if (!workflow.type || workflow.options.maxAttempts === undefined) return undefined; // named only: registered already
    const entry = registryEntry(workflow.name, workflow.options as ResolvedWorkflowOptions, hasOnFailureMethod(workflow.type), 'emit');
    return this.store.registerIfAbsent(workflow.name, entry).then(
      () => undefined,
      (error: unknown) => {
        // the emit goes on (its run is found by getRun); the next one tries again
        this.seen.delete(workflow.name);
        this.logger.warn(`Could not register workflow '${workflow.name}' for listings: ${errorMessage(error)}`);
      },
    );
  }
}
