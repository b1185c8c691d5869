import { Catch, type ArgumentsHost, type HttpServer } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import { throwError } from 'rxjs';
import { WorkflowError } from '../errors/workflow.errors.js';
import { toWorkflowHttpException } from './workflow-http-exception.js';

/**
 * Answers this package's errors over HTTP the way a Nest app answers its own (see
 * toWorkflowHttpException): InputValidationError 400 with ValidationPipe's body, UnknownWorkflowError
 * and RunNotFoundError 404, WaitTimeoutError 504 with the run id, CanceledError 409, a failed run 500
 * with its id and error message and no stack, WorkflowConnectionError 503. Exceptions that are not this
 * package's never reach it (`@Catch(WorkflowError)`), and its errors without an HTTP meaning get Nest's
 * default answer (500 "Internal server error", logged by ExceptionsHandler).
 *
 *   app.useGlobalFilters(new WorkflowHttpExceptionFilter());               // in main.ts
 *   { provide: APP_FILTER, useClass: WorkflowHttpExceptionFilter }          // or as a provider
 *
 * Outside HTTP it hands the error back unchanged: to GraphQL as the error to report, to a microservice
 * as a failed observable, so that their own exception layers answer it.
 */
@Catch(WorkflowError)
export class WorkflowHttpExceptionFilter extends BaseExceptionFilter {
  override catch(exception: WorkflowError, host: ArgumentsHost): unknown {
    if (host.getType() === 'rpc') return throwError(() => exception);
    if (host.getType() !== 'http') return exception;
    const answer = toWorkflowHttpException(exception);
    const adapter = this.applicationRef ?? this.httpAdapterHost?.httpAdapter;
    if (adapter) return super.catch(answer ?? exception, host);
    // Made with `new` and no adapter (useGlobalFilters): BaseExceptionFilter has no way to answer, so
    // the response object answers, as Express's and Fastify's both can.
    if (!answer) return this.handleUnknownError(exception, host, responseAdapter);
    const response: unknown = host.switchToHttp().getResponse();
    if (responseAdapter.isHeadersSent(response)) return responseAdapter.end(response);
    return responseAdapter.reply(response, answer.getResponse(), answer.getStatus());
  }
}

interface RawResponse {
  headersSent?: boolean;
  sent?: boolean;
  status(code: number): { send(body: unknown): unknown };
  end?(): unknown;
  raw?: { end(): unknown };
}

/** The three calls of HttpServer the exception layer makes, on an Express response or a Fastify reply. */
const responseAdapter = {
  isHeadersSent: (response: unknown) => Boolean((response as RawResponse).headersSent ?? (response as RawResponse).sent),
  reply: (response: unknown, body: unknown, status: number) => (response as RawResponse).status(status).send(body),
  end: (response: unknown) => ((response as RawResponse).raw ?? (response as RawResponse)).end?.(),
} as unknown as HttpServer;
