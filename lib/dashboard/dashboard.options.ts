import type { CanActivate, ModuleMetadata, Type } from '@nestjs/common';

export interface WorkflowDashboardOptions {
  /** Where the dashboard and its JSON API (`<path>/api/…`) are served, default '/workflows'. */
  path?: string;
  /**
   * A guard every page, asset and API route goes through: typically the app's own auth guard.
   * A class is instantiated in the dashboard's module (give its dependencies' modules in `imports`).
   */
  guard?: Type<CanActivate> | CanActivate;
  /** Modules the guard's dependencies come from. */
  imports?: ModuleMetadata['imports'];
  /** Hides cancel, retry, send-event and pause/resume in the pages and refuses them with 403 in the API. */
  readOnly?: boolean;
}

export interface ResolvedDashboardOptions {
  path: string;
  readOnly: boolean;
  /** A guard was given: without one, start-up warns. */
  guarded: boolean;
}

export const WORKFLOW_DASHBOARD_OPTIONS = Symbol('WORKFLOW_DASHBOARD_OPTIONS');
