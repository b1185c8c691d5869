import { Module, type DynamicModule } from '@nestjs/common';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import { DashboardApi } from './dashboard.api.js';
import { createDashboardController } from './dashboard.controller.js';
import { WORKFLOW_DASHBOARD_OPTIONS, type ResolvedDashboardOptions, type WorkflowDashboardOptions } from './dashboard.options.js';

/**
 * A dashboard for the workflows of this app's Redis, mounted in its HTTP server. Nothing is served
 * unless this module is imported; it needs WorkflowModule (any worker setting) in the same app.
 */
@Module({})
export class WorkflowDashboardModule {
  static forRoot(options: WorkflowDashboardOptions = {}): DynamicModule {
    const resolved: ResolvedDashboardOptions = { path: normalizePath(options.path ?? '/workflows'), readOnly: options.readOnly === true };
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
