/**
 * Workflows whose size is their input: a fan-out of children, concurrent steps, an event waiter and a parent of
 * children that never finish, for the suites that test calls at large sizes (test/e2e and test/slow bounded-calls).
 */
import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext } from '../../lib/index.js';

@Workflow('sized-kid')
@Injectable()
export class KidWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    return ctx.input.i * 2;
  }
}

@Workflow('sized-fan')
@Injectable()
export class FanWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const outputs = await Promise.all(Array.from({ length: ctx.input.n }, (_, i) => ctx.step.runWorkflow('kid', KidWorkflow, { i })));
    return { count: outputs.length, sum: outputs.reduce((a, b) => a + b, 0) };
  }
}

@Workflow('sized-steps')
@Injectable()
export class StepsWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    const values = await Promise.all(Array.from({ length: ctx.input.n }, (_, i) => ctx.step.run('s', () => i)));
    return { count: values.length, sum: values.reduce((a, b) => a + b, 0) };
  }
}

@Workflow('sized-waiter')
@Injectable()
export class WaiterWorkflow {
  /** Returns the event's payload, or with `sizeOnly` the length of its JSON (a large payload kept once more as the output would hide what the event's delivery kept). */
  async execute(ctx: WorkflowContext<{ key: string; sizeOnly?: boolean }>) {
    const payload = await ctx.step.waitForEvent('go', { event: 'go', key: ctx.input.key });
    return ctx.input.sizeOnly ? JSON.stringify(payload).length : payload;
  }
}

@Workflow('sized-stuck-kid')
@Injectable()
export class StuckKidWorkflow {
  async execute(ctx: WorkflowContext<{ i: number }>) {
    return ctx.step.waitForEvent('never', { event: 'never-sent' });
  }
}

@Workflow('sized-stuck-fan')
@Injectable()
export class StuckFanWorkflow {
  async execute(ctx: WorkflowContext<{ n: number }>) {
    return Promise.all(Array.from({ length: ctx.input.n }, (_, i) => ctx.step.runWorkflow('kid', StuckKidWorkflow, { i })));
  }
}

@Workflow('sized-busy')
@Injectable()
export class BusyWorkflow {
  async execute(ctx: WorkflowContext<{ ms: number }>) {
    return ctx.step.run('busy', () => new Promise((resolve) => setTimeout(() => resolve(ctx.input.ms), ctx.input.ms)));
  }
}

export const SIZED_WORKFLOWS = [BusyWorkflow, KidWorkflow, FanWorkflow, StepsWorkflow, WaiterWorkflow, StuckKidWorkflow, StuckFanWorkflow];
