export { WorkflowModule } from './workflow.module.js';
export { WorkflowClient } from './client/workflow.client.js';
export { Workflow, Step, OnFailure } from './decorators/index.js';
export { currentStep } from './execution/execution-scope.js';
export * from './errors/index.js';
export type * from './interfaces/module-options.interface.js';
export type * from './interfaces/workflow.interfaces.js';
export type * from './interfaces/run.interfaces.js';
