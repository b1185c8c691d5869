import { describe, expect, it } from '@jest/globals';
import { HttpException } from '@nestjs/common';
import { markRunFailure } from '../../lib/errors/run-failure.js';
import {
  CanceledError,
  InputValidationError,
  LeaseLostError,
  TimeoutError,
  UnknownWorkflowError,
  WorkflowError,
  toWorkflowHttpException,
} from '../../lib/index.js';

const answer = (error: unknown) => {
  const http = toWorkflowHttpException(error);
  return http && { status: http.getStatus(), body: http.getResponse() };
};

describe('toWorkflowHttpException', () => {
  it("answers an error a run failed with as the run's outcome, whatever its class: 500, or 409 when canceled", () => {
    // A run fails with these when it emits a child with bad input or an unknown name: the request was fine.
    for (const error of [new InputValidationError('Invalid input for RowDto', []), new UnknownWorkflowError('Unknown workflow'), new TimeoutError('late')]) {
      expect(answer(markRunFailure(error, 'r1'))).toEqual({
        status: 500,
        body: { statusCode: 500, error: 'Internal Server Error', name: error.name, message: error.message, runId: 'r1' },
      });
    }
    expect(answer(markRunFailure(new CanceledError(), 'r2'))?.status).toBe(409);
  });

  it('answers the same errors thrown by the request itself as the request\'s fault', () => {
    expect(answer(new InputValidationError('The input must be an object matching OrderDto, got an array.', []))).toEqual({
      status: 400,
      body: { statusCode: 400, error: 'Bad Request', message: ['The input must be an object matching OrderDto, got an array.'] },
    });
    expect(answer(new UnknownWorkflowError('Unknown workflow'))?.status).toBe(404);
  });

  it('has no answer for errors without an HTTP meaning: they get Nest\'s default 500', () => {
    for (const error of [new Error('bug'), new WorkflowError('priority must be a whole number'), new LeaseLostError('lost'), 'text']) {
      expect(toWorkflowHttpException(error)).toBeUndefined();
    }
    expect(toWorkflowHttpException(new UnknownWorkflowError('x'))).toBeInstanceOf(HttpException);
  });
});
