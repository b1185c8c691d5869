import type { Type } from '@nestjs/common';
import { InputValidationError, WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { InputValidationOptions } from '../interfaces/workflow.interfaces.js';
import type { ValidationError } from 'class-validator';

export type { InputValidationOptions };

export const DEFAULT_VALIDATION: Required<InputValidationOptions> = { whitelist: true, forbidNonWhitelisted: true };

/**
 * Turns a plain input into an instance of the workflow's input DTO (class-transformer) and validates it
 * (class-validator). Without a DTO the input is returned as it is. Both libraries are optional peers:
 * they are loaded only when a workflow declares `input`.
 */
export async function prepareInput(
  dto: Type<object> | undefined,
  plain: unknown,
  options: InputValidationOptions = DEFAULT_VALIDATION,
): Promise<unknown> {
  if (!dto) return plain;
  const [{ plainToInstance }, { validate }] = await loadValidationLibraries();
  if (plain === null || typeof plain !== 'object' || Array.isArray(plain)) {
    throw new InputValidationError(`The input must be an object matching ${dto.name}, got ${plain === null ? 'null' : Array.isArray(plain) ? 'an array' : typeof plain}.`, []);
  }
  const instance = plainToInstance(dto, plain) as object;
  const errors = await validate(instance, { ...DEFAULT_VALIDATION, ...options });
  if (errors.length > 0) {
    const details = errors
      .map((e) => `${e.property}: ${Object.values(e.constraints ?? {}).join(', ') || 'invalid nested value'}`)
      .join('; ');
    throw new InputValidationError(`Invalid input for ${dto.name}: ${details}`, withoutInput(errors, instance));
  }
  return instance;
}

/**
 * class-validator's errors with `target` (the object validated: the whole input, at the top level) left
 * out, and `value` too where it is the whole input: an error is logged and shown, and the input may hold
 * secrets. What was wrong (property, constraints, children) stays.
 */
function withoutInput(errors: ValidationError[], input: object): ValidationError[] {
  return errors.map((error) => {
    const { target: _target, value, children, ...rest } = error;
    const kept = Object.assign(Object.create(Object.getPrototypeOf(error) as object) as ValidationError, rest);
    if (value !== input) kept.value = value;
    kept.children = children ? withoutInput(children, input) : [];
    return kept;
  });
}

async function loadValidationLibraries(): Promise<[typeof import('class-transformer'), typeof import('class-validator')]> {
  try {
    return await Promise.all([import('class-transformer'), import('class-validator')]);
  } catch {
    throw new WorkflowConfigurationError(
      'A workflow declares an input DTO but class-validator and class-transformer are not installed: npm install class-validator class-transformer',
    );
  }
}
