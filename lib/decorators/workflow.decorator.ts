import { SetMetadata } from '@nestjs/common';
import type { WorkflowOptions } from '../interfaces/workflow.interfaces.js';
import { WORKFLOW_METADATA } from '../workflow.constants.js';

export interface WorkflowMetadata {
  name: string;
  options: WorkflowOptions;
}

/** Marks a provider as the handler of the workflow `name`; its `execute(ctx)` is the workflow's body. */
export function Workflow(name: string, options: WorkflowOptions = {}): ClassDecorator {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
    throw new TypeError('@Workflow(name) needs a non-empty name of at most 200 characters.');
  }
  return SetMetadata<string, WorkflowMetadata>(WORKFLOW_METADATA, { name, options });
}
