export { Workflow } from './workflow.decorator.js';
export { Step } from './step.decorator.js';
export { OnFailure } from './on-failure.decorator.js';
