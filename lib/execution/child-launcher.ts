import type { WorkflowClass } from '../interfaces/workflow.interfaces.js';
import type { ShardRef } from '../redis/keys.js';
import type { EmitArgs } from '../redis/workflow-store.js';

export interface ChildStart {
  parentId: string;
  parentRoot: string;
  /** The parent's step that waits for the child; absent for emitWorkflow (the parent does not wait). */
  parentField?: string;
  /** Makes the child's run id deterministic, so that a replay never starts a second child. */
  seed: string;
  workflow: string | WorkflowClass;
  input: unknown;
  idempotencyKey?: string;
  queue?: string;
  runAt?: Date;
  /** The child's deadline (absolute server ms), when it is created by wf1_emit (a park gives a child it spawns its own). */
  deadlineMs?: number;
}

/** Starts child runs for a running workflow (implemented by WorkflowClient). */
export interface ChildLauncher {
  /**
   * Returns the id of the run that stands for the child: an existing one for a reused idempotency key
   * (`joined`: a run the parent did not start, which it waits for but does not own).
   */
  startChild(start: ChildStart): Promise<{ id: string; workflow: string; joined?: boolean }>;
  /**
   * The run a child would be, when the parent can create it in the same call as it parks: a child that
   * lives in the parent's shard and needs no look-up or validation that waits. Undefined otherwise.
   */
  childInShard(start: ChildStart, parentShard: ShardRef): { id: string; workflow: string; emit: EmitArgs } | undefined;
  /** The run id a child started with these arguments gets (unless its idempotency key names another run). */
  childRunId(start: ChildStart): string;
  /**
   * The run of a graph's node (ctx.step.graph), created later in the parent's shard by Redis: its id, workflow
   * and input text. Rejects (InvalidArgumentError, UnknownWorkflowError, InputValidationError) when the
   * workflow cannot be a node there.
   */
  graphNodeRun(start: ChildStart, parentShard: ShardRef): Promise<GraphNodeRun>;
  /** The workflow name of a reference, for fingerprints. */
  workflowName(workflow: string | WorkflowClass): string;
}

/** A graph node's run as ChildLauncher.graphNodeRun prepares it: `flow` when its workflow has flow control. */
export interface GraphNodeRun {
  id: string;
  workflow: string;
  /** JSON text */
  input: string;
  flow?: { key: string; spec: string };
}
