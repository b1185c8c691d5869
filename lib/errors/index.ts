export * from './workflow.errors.js';
