import type { MetadataScanner } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { durableMethod, type StepMetadata } from '../decorators/step.decorator.js';
import { STEP_METADATA } from '../workflow.constants.js';

type Method = (...args: unknown[]) => unknown;

/**
 * A provider replaced by another value (useValue, useFactory, useClass, or overrideProvider in a test)
 * keeps the @Step methods of the class it stands for durable: the replacement's methods of the same names
 * are intercepted with the original's step options and name. Without this, a fake's method was a plain
 * call: it ran once per replay and left no step record.
 *
 * The replacement's method is wrapped in a Proxy set on the instance, so it stays itself to the code that
 * holds it (a jest.fn() keeps its mock API and its calls). Returns the names of the methods wrapped.
 */
export function keepReplacedStepsDurable(wrapper: InstanceWrapper, scanner: MetadataScanner): string[] {
  const token = wrapper.token as unknown;
  const instance = wrapper.instance as Record<string, unknown> | undefined;
  if (typeof token !== 'function' || !token.prototype || !instance || typeof instance !== 'object') return [];
  const prototype = token.prototype as Record<string, unknown>;
  const wrapped: string[] = [];
  for (const key of scanner.getAllMethodNames(prototype)) {
    const meta = Reflect.getMetadata(STEP_METADATA, prototype[key] as object) as StepMetadata | undefined;
    if (!meta) continue;
    const current = instance[key];
    // the class's own method (inherited, already durable), a replacement's own @Step, or nothing to wrap
    if (typeof current !== 'function' || current === prototype[key] || Reflect.hasMetadata(STEP_METADATA, current)) continue;
    const durable = durableMethod(current as Method, meta.method, meta);
    const proxy = new Proxy(current as Method, { apply: (_target, self, args: unknown[]) => durable.apply(self, args) });
    Reflect.defineMetadata(STEP_METADATA, meta, proxy);
    const own = Object.getOwnPropertyDescriptor(instance, key);
    if (!Reflect.defineProperty(instance, key, { value: proxy, writable: true, configurable: true, enumerable: own?.enumerable ?? false })) continue;
    wrapped.push(key);
  }
  return wrapped;
}
