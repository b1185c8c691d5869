import type { Type } from '@nestjs/common';
import { createHash, randomInt } from 'node:crypto';
import { readWorkflowMetadata, resolveWorkflowOptions, type ResolvedWorkflowOptions } from '../discovery/workflow-definition.js';
import type { WorkflowRegistry } from '../discovery/workflow-registry.js';
import { UnknownWorkflowError, WorkflowError } from '../errors/workflow.errors.js';
import type { ChildStart } from '../execution/child-launcher.js';
import type { WorkflowClass } from '../interfaces/workflow.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { WorkflowRedis } from '../redis/workflow-redis.js';

/** What the client knows of a workflow it emits: from this app's providers, the class, or Redis. */
export interface EmitTarget {
  name: string;
  options: Pick<ResolvedWorkflowOptions, 'queue' | 'maxConcurrency'> & Partial<ResolvedWorkflowOptions>;
  /** The workflow's class, when the app has it (a provider, or a class passed to emit). */
  type?: Type;
}

export type WorkflowRef = string | WorkflowClass;

/**
 * Which workflow an emit names (a class, this app's provider, or a name workers registered in Redis) and
 * which shard its run goes to.
 */
export class EmitTargets {
  private readonly remote = new Map<string, EmitTarget>();

  constructor(
    private readonly redis: WorkflowRedis,
    private readonly registry: WorkflowRegistry,
  ) {}

  workflowName(workflow: string | WorkflowClass): string {
    if (typeof workflow === 'string') return workflow;
    const meta = readWorkflowMetadata(workflow);
    if (!meta) throw new UnknownWorkflowError(`${(workflow as Type).name} is not a workflow: decorate it with @Workflow('name').`);
    return meta.name;
  }

  /** The target of an emit when it needs no look-up in Redis (a class, a local or already seen name). */
  known(workflow: WorkflowRef): EmitTarget | undefined {
    if (typeof workflow === 'function') {
      const local = this.registry.getByType(workflow as Type);
      if (local) return local;
      const meta = readWorkflowMetadata(workflow);
      if (!meta) throw new UnknownWorkflowError(`${(workflow as Type).name} is not a workflow: decorate it with @Workflow('name').`);
      return { name: meta.name, options: resolveWorkflowOptions(meta), type: workflow as Type };
    }
    if (typeof workflow !== 'string' || workflow === '') {
      throw new UnknownWorkflowError('Name a workflow by its @Workflow name or pass its class.');
    }
    return this.registry.get(workflow) ?? this.remote.get(workflow);
  }

  async resolve(workflow: WorkflowRef): Promise<EmitTarget> {
    const known = this.known(workflow);
    if (known) return known;
    const name = workflow as string;
    await this.redis.ready();
    const entry = await this.redis.store.readRegistryEntry(name);
    if (!entry) {
      throw new UnknownWorkflowError(
        `Unknown workflow '${name}': it is not a provider of this app and no worker has registered it in Redis. Check the name, or pass the workflow class.`,
      );
    }
    const meta = JSON.parse(entry) as { queue: string; maxConcurrency: number; flow?: unknown; versioning?: 'pinned' };
    if (meta.flow) {
      throw new WorkflowError(
        `Workflow '${name}' has flow control (concurrency, rateLimit or fairness), whose key is computed from the input by the workflow's class: emit it with the class (client.emit(${name}Class, input)) or from an app that has it as a provider.`,
      );
    }
    const target: EmitTarget = {
      name,
      options: { queue: meta.queue, maxConcurrency: meta.maxConcurrency ?? 0, ...(meta.versioning === 'pinned' ? { versioning: 'pinned' as const } : {}) },
    };
    this.remote.set(name, target);
    return target;
  }

  /** A child's target without a look-up in Redis: known, or read from the class's metadata (defaults for a bare name). */
  forChild(start: ChildStart): EmitTarget {
    const name = this.workflowName(start.workflow);
    const local = typeof start.workflow === 'string' ? this.registry.get(name) : this.registry.getByType(start.workflow as Type);
    const cached = local ?? this.remote.get(name);
    return cached ?? { name, options: resolveWorkflowOptions(readWorkflowMetadata(start.workflow) ?? { name, options: {} }) };
  }

  /**
   * A workflow with maxConcurrency keeps its runs in partition 0 of its queue, where its concurrency is
   * counted; a keyed emit goes to the partition its key hashes to, so racing emits meet; others spread.
   */
  pickShard(queue: string, target: EmitTarget, idempotencyKey?: string, seed?: string, flowKey?: string): ShardRef {
    const partitions = this.redis.settings.partitions(queue);
    if (partitions === 1 || target.options.maxConcurrency > 0) return { queue, partition: 0 };
    // A flow key's limits are kept in one shard: its runs all go there (and an idempotency key is then
    // unique within the flow key's shard, that is, among runs of the same flow key).
    if (flowKey !== undefined) {
      return { queue, partition: createHash('sha1').update(`${target.name}\0flow\0${flowKey}`).digest().readUInt32BE(0) % partitions };
    }
    if (idempotencyKey !== undefined || seed !== undefined) {
      const hash = createHash('sha1').update(idempotencyKey !== undefined ? `${target.name}\0${idempotencyKey}` : `child\0${seed}`).digest();
      return { queue, partition: hash.readUInt32BE(0) % partitions };
    }
    return { queue, partition: randomInt(partitions) };
  }
}
