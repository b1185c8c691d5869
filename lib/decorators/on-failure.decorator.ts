import { SetMetadata } from '@nestjs/common';
import { ON_FAILURE_METADATA } from '../workflow.constants.js';

/**
 * Marks the method of a @Workflow class that runs once after the run failed for good (or was canceled),
 * after its compensations. It receives an OnFailureContext with the run, its input and the error.
 */
export function OnFailure(): MethodDecorator {
  return SetMetadata(ON_FAILURE_METADATA, true);
}
