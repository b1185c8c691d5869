import { createHash } from 'node:crypto';
import { checkStepName, checkStepOptions } from '../execution/call-limits.js';
import { executionScope } from '../execution/execution-scope.js';
import type { StepOptions } from '../interfaces/workflow.interfaces.js';
import { STEP_METADATA } from '../workflow.constants.js';

/**
 * Makes a method a durable step. The method itself is wrapped when the class is defined, so every call
 * is intercepted, through any instance: called while a workflow run executes, its result is stored and a
 * replay returns the stored result without calling it; called anywhere else (or from inside another
 * step) it is an ordinary method call. Default name: 'ClassName.methodName'.
 */
export function Step(options: StepOptions = {}): MethodDecorator {
  return (target, key, descriptor: PropertyDescriptor) => {
    const original = descriptor.value as (...args: unknown[]) => unknown;
    if (typeof original !== 'function') throw new TypeError(`@Step() can only decorate methods (${String(key)}).`);
    const method = `${target.constructor.name}.${String(key)}`;
    const name = options.name ?? method;
    checkStepName(name);
    checkStepOptions(options, `@Step() on ${method}`);
    const durable = function (this: unknown, ...args: unknown[]) {
      const scope = executionScope.getStore();
      if (!scope || scope.step) return original.apply(this, args);
      return scope.execution.runStep({
        name,
        kind: 'method',
        fingerprint: `${method}(${hashArguments(args)})`,
        args,
        fn: () => original.apply(this, args),
        timeoutMs: options.timeoutMs,
        retries: options.retries,
        backoff: options.backoff,
      });
    };
    Object.defineProperty(durable, 'name', { value: original.name });
    for (const metadataKey of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, original), durable);
    }
    Reflect.defineMetadata(STEP_METADATA, { name, ...options }, durable);
    descriptor.value = durable;
    return descriptor;
  };
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
