import { createHash } from 'node:crypto';
import { checkStepName, checkStepOptions } from '../execution/call-limits.js';
import { executionScope } from '../execution/execution-scope.js';
import { runNestedStep } from '../execution/nested-step.js';
import type { StepOptions } from '../interfaces/workflow.interfaces.js';
import { STEP_METADATA } from '../workflow.constants.js';

/** What @Step() records on the method it wraps (read back to keep a replacement's methods durable). */
export interface StepMetadata extends StepOptions {
  name: string;
  /** 'ClassName.methodName' of the decorated method: part of its fingerprint. */
  method: string;
}

type Method = (...args: unknown[]) => unknown;

/**
 * Makes a method a durable step. The method itself is wrapped when the class is defined, so every call
 * is intercepted, through any instance: called while a workflow run executes, its result is stored and a
 * replay returns the stored result without calling it; called inside another step it is part of that
 * step (with its own retries and timeout, see runNestedStep); called outside a run it is an ordinary
 * method call. Default name: 'ClassName.methodName'.
 */
export function Step(options: StepOptions = {}): MethodDecorator {
  return (target, key, descriptor: PropertyDescriptor) => {
    const original = descriptor.value as Method;
    if (typeof original !== 'function') throw new TypeError(`@Step() can only decorate methods (${String(key)}).`);
    const method = `${target.constructor.name}.${String(key)}`;
    checkStepName(options.name ?? method);
    checkStepOptions(options, `@Step() on ${method}`);
    // The class's methods are all on its prototype when decorators run: a misspelt name is caught here.
    if (options.compensate !== undefined && typeof (target as Record<string, unknown>)[options.compensate] !== 'function') {
      throw new TypeError(
        `@Step({ compensate: '${String(options.compensate)}' }) on ${method}: ${target.constructor.name} has no method of that name. Name a method of the same class.`,
      );
    }
    descriptor.value = durableMethod(original, method, options);
    return descriptor;
  };
}

/**
 * Wraps `original` as the durable step `method` ('ClassName.methodName') with `options`. Used by @Step(),
 * and for a replacement of a provider whose class has @Step methods (see keepReplacedStepsDurable).
 */
export function durableMethod(original: Method, method: string, options: StepOptions): Method {
  const name = options.name ?? method;
  const durable = function (this: unknown, ...args: unknown[]) {
    const scope = executionScope.getStore();
    if (!scope) return original.apply(this, args);
    if (scope.step) return runNestedStep(name, options, { ...scope, step: scope.step }, () => original.apply(this, args));
    const self = this as Record<string, unknown>;
    const compensate = options.compensate;
    return scope.execution.runStep({
      name,
      kind: 'method',
      fingerprint: `${method}(${hashArguments(args)})`,
      args,
      fn: () => original.apply(this, args),
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      backoff: options.backoff,
      shouldRetry: options.shouldRetry,
      compensate: compensate === undefined ? undefined : (result: unknown) => (self[compensate] as Method).call(self, result, ...args),
    });
  };
  Object.defineProperty(durable, 'name', { value: original.name });
  for (const metadataKey of Reflect.getMetadataKeys(original)) {
    Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, original), durable);
  }
  const metadata: StepMetadata = { ...options, name, method };
  Reflect.defineMetadata(STEP_METADATA, metadata, durable);
  return durable;
}

function hashArguments(args: unknown[]): string {
  let text: string;
  try {
    text = JSON.stringify(args) ?? '';
  } catch {
    return 'unhashable';
  }
  return createHash('sha1').update(text).digest('base64url').slice(0, 12);
}
