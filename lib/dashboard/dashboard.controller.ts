import { Body, Controller, ForbiddenException, Get, Header, Headers, HttpCode, Inject, Param, Post, Query, UseGuards, type CanActivate, type Type } from '@nestjs/common';
import { DashboardApi } from './dashboard.api.js';
import { loadDashboardAssets } from './dashboard.assets.js';
import { WORKFLOW_DASHBOARD_OPTIONS, type ResolvedDashboardOptions } from './dashboard.options.js';

/** Sent by the dashboard's own script: a cross-site form cannot set it, so actions cannot be forged by another site. */
export const DASHBOARD_ACTION_HEADER = 'x-workflow-dashboard';

const NO_STORE = 'no-store';
const PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/**
 * Builds the dashboard's controller for one mount path: Nest reads a controller's path and guards from
 * its class, so each forRoot() gets a class of its own.
 */
export function createDashboardController(path: string, guard: Type<CanActivate> | CanActivate | undefined): Type<unknown> {
  @Controller(path)
  class WorkflowDashboardController {
    constructor(
      @Inject(DashboardApi) private readonly api: DashboardApi,
      @Inject(WORKFLOW_DASHBOARD_OPTIONS) private readonly options: ResolvedDashboardOptions,
    ) {}

    @Get()
    @Header('Content-Type', 'text/html; charset=utf-8')
    @Header('Cache-Control', NO_STORE)
    @Header('Content-Security-Policy', PAGE_POLICY)
    @Header('X-Content-Type-Options', 'nosniff')
    page(): string {
      return loadDashboardAssets().html(this.options.path, this.options.readOnly);
    }

    @Get('assets/dashboard.js')
    @Header('Content-Type', 'text/javascript; charset=utf-8')
    @Header('X-Content-Type-Options', 'nosniff')
    script(): string {
      return loadDashboardAssets().script;
    }

    @Get('assets/dashboard.css')
    @Header('Content-Type', 'text/css; charset=utf-8')
    @Header('X-Content-Type-Options', 'nosniff')
    styles(): string {
      return loadDashboardAssets().styles;
    }

    @Get('api/stats')
    @Header('Cache-Control', NO_STORE)
    stats() {
      return this.api.stats();
    }

    @Get('api/workflows')
    @Header('Cache-Control', NO_STORE)
    workflows() {
      return this.api.workflows();
    }

    @Get('api/runs')
    @Header('Cache-Control', NO_STORE)
    runs(@Query() query: Record<string, string | undefined>) {
      return this.api.runs(query);
    }

    @Get('api/runs/:id')
    @Header('Cache-Control', NO_STORE)
    run(@Param('id') id: string) {
      return this.api.run(id);
    }

    @Get('api/search')
    @Header('Cache-Control', NO_STORE)
    search(@Query('q') q: string | undefined) {
      return this.api.search(q);
    }

    @Post('api/runs/:id/cancel')
    @HttpCode(200)
    cancel(@Param('id') id: string, @Body() body: { reason?: unknown } | undefined, @Headers(DASHBOARD_ACTION_HEADER) marker: string | undefined) {
      assertFromDashboard(marker);
      return this.api.cancel(id, body?.reason);
    }

    @Post('api/runs/:id/retry')
    @HttpCode(200)
    retry(@Param('id') id: string, @Headers(DASHBOARD_ACTION_HEADER) marker: string | undefined) {
      assertFromDashboard(marker);
      return this.api.retry(id);
    }

    @Post('api/events')
    @HttpCode(200)
    sendEvent(@Body() body: { event?: unknown; key?: unknown; payload?: unknown } | undefined, @Headers(DASHBOARD_ACTION_HEADER) marker: string | undefined) {
      assertFromDashboard(marker);
      return this.api.sendEvent(body);
    }
  }
  if (guard) UseGuards(guard)(WorkflowDashboardController);
  return WorkflowDashboardController;
}

function assertFromDashboard(marker: string | undefined): void {
  if (marker !== '1') throw new ForbiddenException(`Dashboard actions need the header '${DASHBOARD_ACTION_HEADER}: 1' (the dashboard's page sends it).`);
}
