import {
  BadRequestException,
  ConflictException,
  GatewayTimeoutException,
  HttpException,
  InternalServerErrorException,
  NotFoundException,
  ServiceUnavailableException,
  ValidationPipe,
} from '@nestjs/common';
import { failedRunIdOf } from '../errors/run-failure.js';
import {
  CanceledError,
  InputValidationError,
  RunNotFoundError,
  UnknownWorkflowError,
  WaitTimeoutError,
  WorkflowConnectionError,
} from '../errors/workflow.errors.js';

let validationPipe: ValidationPipe | undefined;

/**
 * The HTTP answer for an error of this package, as a Nest HttpException, or undefined for an error that
 * has no HTTP meaning of its own (a bug, a misuse of the API: Nest's default 500 fits those).
 *
 * An error a run failed with (what `result()` and `client.run()` reject with) is the run's outcome, not
 * a fault of the request: 409 when the run was canceled, else 500 with the run id and the error's name
 * and message, never its stack. That comes first, so an InputValidationError or UnknownWorkflowError that
 * failed a run (a child emitted with bad input) is not answered as if the request were at fault.
 */
export function toWorkflowHttpException(error: unknown): HttpException | undefined {
  const failedRunId = failedRunIdOf(error);
  if (failedRunId !== undefined) {
    const { name, message } = error as Error;
    if (error instanceof CanceledError) return new ConflictException({ statusCode: 409, message, error: 'Conflict', name, runId: failedRunId });
    return new InternalServerErrorException({ statusCode: 500, message, error: 'Internal Server Error', name, runId: failedRunId });
  }
  if (error instanceof InputValidationError) return badRequest(error);
  if (error instanceof RunNotFoundError) return new NotFoundException({ statusCode: 404, message: error.message, error: 'Not Found', name: error.name, runId: error.runId });
  if (error instanceof UnknownWorkflowError) return new NotFoundException({ statusCode: 404, message: error.message, error: 'Not Found', name: error.name });
  if (error instanceof WaitTimeoutError) {
    return new GatewayTimeoutException({ statusCode: 504, message: error.message, error: 'Gateway Timeout', name: error.name, runId: error.runId });
  }
  if (error instanceof CanceledError) return new ConflictException({ statusCode: 409, message: error.message, error: 'Conflict', name: error.name });
  if (error instanceof WorkflowConnectionError) {
    return new ServiceUnavailableException({ statusCode: 503, message: error.message, error: 'Service Unavailable', name: error.name });
  }
  return undefined;
}

/**
 * The body Nest's ValidationPipe answers (`{ statusCode: 400, message: string[], error: 'Bad Request' }`),
 * made by the pipe's own exception factory so that nested properties read the same ('items.0.sku must
 * be a string'). An input that was not an object at all has no ValidationError: its one message is ours.
 */
function badRequest(error: InputValidationError): HttpException {
  if (error.errors.length === 0) return new BadRequestException({ statusCode: 400, message: [error.message], error: 'Bad Request' });
  // Built on first use: the pipe loads class-validator, which is present whenever validation has run.
  validationPipe ??= new ValidationPipe();
  return validationPipe.createExceptionFactory()(error.errors) as HttpException;
}
