import { Inject, Logger, Module, type DynamicModule, type OnModuleInit } from '@nestjs/common';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import { DashboardApi } from './dashboard.api.js';
import { createDashboardController } from './dashboard.controller.js';
import { WORKFLOW_DASHBOARD_OPTIONS, type ResolvedDashboardOptions, type WorkflowDashboardOptions } from './dashboard.options.js';

/**
 * A dashboard for the workflows of this app's Redis, mounted in its HTTP server. Nothing is served
 * unless this module is imported; it needs WorkflowModule (any worker setting) in the same app.
 */
@Module({})
export class WorkflowDashboardModule implements OnModuleInit {
  constructor(@Inject(WORKFLOW_DASHBOARD_OPTIONS) private readonly options: ResolvedDashboardOptions) {}

  /** A dashboard without a guard shows every run's input, output and errors, and its actions, to anyone
   *  who reaches the app's HTTP server: said once at start, with how to set one. */
  onModuleInit(): void {
    if (this.options.guarded) return;
    new Logger('WorkflowDashboard').warn(
      `The workflow dashboard at ${this.options.path} has no guard: anyone who can reach this HTTP server can read every run's input, output and errors` +
        (this.options.readOnly ? '' : ', and cancel runs, retry them and send events') +
        `. Pass your auth guard: WorkflowDashboardModule.forRoot({ guard: AdminGuard, imports: [AuthModule] })` +
        (this.options.readOnly ? '.' : ', and readOnly: true where nobody should act.'),
    );
  }

  static forRoot(options: WorkflowDashboardOptions = {}): DynamicModule {
    const resolved: ResolvedDashboardOptions = {
      path: normalizePath(options.path ?? '/workflows'),
      readOnly: options.readOnly === true,
      guarded: options.guard !== undefined,
    };
    return {
      module: WorkflowDashboardModule,
      imports: options.imports ?? [],
      controllers: [createDashboardController(resolved.path, options.guard)],
      providers: [{ provide: WORKFLOW_DASHBOARD_OPTIONS, useValue: resolved }, DashboardApi],
    };
  }
}

function normalizePath(path: string): string {
  const trimmed = `/${path}`.replace(/\/+/g, '/').replace(/\/$/, '');
  if (trimmed === '' || !/^(\/[A-Za-z0-9._~-]+)+$/.test(trimmed)) {
    throw new WorkflowConfigurationError(
      `WorkflowDashboardModule: path ${JSON.stringify(path)} is not usable; give a URL path of letters, digits and . _ ~ - segments, such as '/workflows' or '/admin/workflows'.`,
    );
  }
  return trimmed;
}
