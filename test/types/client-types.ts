/**
 * Type-level tests: this file is not executed, it is compiled by `npm run typecheck` (tsconfig.json
 * includes test/). Each `@ts-expect-error` fails the typecheck if the line it marks compiles, and each
 * `assertType<Equal<…>>` fails it if an inferred type is not exactly the one written.
 */
import { IsString } from 'class-validator';
import {
  runInline,
  Workflow,
  type InlineResult,
  type RunHandle,
  type WorkflowClient,
  type WorkflowContext,
  type WorkflowHandler,
} from '../../lib/index.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | void {}

class CheckoutInput {
  @IsString()
  orderId!: string;
  coupon?: string;
  label(): string {
    return this.orderId;
  }
}

interface CheckoutOutput {
  chargeId: string;
  total: number;
}

@Workflow('types-checkout', { input: CheckoutInput })
class CheckoutWorkflow implements WorkflowHandler<CheckoutInput, CheckoutOutput> {
  constructor(private readonly dependency: { now(): number }) {}

  async execute(ctx: WorkflowContext<CheckoutInput>): Promise<CheckoutOutput> {
    // The handler sees the DTO instance, methods included.
    const label: string = ctx.input.label();
    const shipped = await ctx.step.runWorkflow('ship', ShippingWorkflow, { orderId: label });
    assertType<Equal<typeof shipped, { trackingId: string }>>();
    // @ts-expect-error the child's input is typed too
    await ctx.step.runWorkflow('ship-again', ShippingWorkflow, { order: label });
    return { chargeId: label, total: this.dependency.now() };
  }
}

@Workflow('types-shipping')
class ShippingWorkflow {
  async execute(ctx: WorkflowContext<{ orderId: string }>) {
    return { trackingId: `t-${ctx.input.orderId}` };
  }
}

class NotAWorkflow {
  run(): void {}
}

export async function clientTypes(client: WorkflowClient): Promise<void> {
  // Input inferred from execute(ctx: WorkflowContext<CheckoutInput>), output from its return type.
  const output = await client.run(CheckoutWorkflow, { orderId: 'o1' });
  assertType<Equal<typeof output, CheckoutOutput>>();

  const handle = await client.emit(CheckoutWorkflow, { orderId: 'o1', coupon: 'TEN' });
  assertType<Equal<typeof handle, RunHandle<CheckoutOutput>>>();
  assertType<Equal<Awaited<ReturnType<typeof handle.result>>, CheckoutOutput>>();

  // A handler without an explicit return type: the output is inferred from what execute returns.
  const shipped = await client.run(ShippingWorkflow, { orderId: 'o1' });
  assertType<Equal<typeof shipped, { trackingId: string }>>();

  // By name the client cannot know the types: unknown, unless the caller states the output.
  const byName = await client.run('types-checkout', { anything: true });
  assertType<Equal<typeof byName, unknown>>();
  const stated = await client.run<'types-checkout', CheckoutOutput>('types-checkout', {});
  assertType<Equal<typeof stated, CheckoutOutput>>();

  // @ts-expect-error orderId must be a string
  await client.run(CheckoutWorkflow, { orderId: 42 });
  // @ts-expect-error orderId is required
  await client.emit(CheckoutWorkflow, {});
  // @ts-expect-error unknown property in an object literal
  await client.emit(CheckoutWorkflow, { orderId: 'o1', admin: true });
  // @ts-expect-error the input is not the child workflow's
  await client.run(ShippingWorkflow, { chargeId: 'x' });
  // @ts-expect-error a class without execute() is not a workflow
  await client.emit(NotAWorkflow, {});
  // @ts-expect-error the output is not a number
  const wrong: number = await client.run(CheckoutWorkflow, { orderId: 'o1' });
  void wrong;
}

export async function inlineTypes(): Promise<void> {
  const result = await runInline(new CheckoutWorkflow({ now: () => 1 }), { input: { orderId: 'o1' } });
  assertType<Equal<typeof result, InlineResult<CheckoutOutput>>>();
  assertType<Equal<typeof result.output, CheckoutOutput | undefined>>();
  // @ts-expect-error runInline checks the input type too
  await runInline(new ShippingWorkflow(), { input: { orderId: 1 } });
}
