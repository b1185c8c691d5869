import { Body, Controller, ForbiddenException, Get, Header, Headers, HttpCode, Inject, Param, Post, Query, Req, UseGuards, type CanActivate, type Type } from '@nestjs/common';
import { DashboardApi } from './dashboard.api.js';
import { loadDashboardAssets } from './dashboard.assets.js';
import { WORKFLOW_DASHBOARD_OPTIONS, type ResolvedDashboardOptions } from './dashboard.options.js';

/** Sent by the dashboard's own script: a cross-site form cannot set it. A cross-site fetch can, where the
 *  app's CORS lets it (`enableCors({ origin: true, credentials: true })`): actions also check where the
 *  request comes from (assertActionAllowed). */
export const DASHBOARD_ACTION_HEADER = 'x-workflow-dashboard';

type RequestHeaders = Record<string, string | string[] | undefined>;

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
    page(@Req() request: { originalUrl?: string; url?: string }): string {
      return loadDashboardAssets().html(mountedPath(request, this.options.path), this.options.readOnly);
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

    @Get('api/throughput')
    @Header('Cache-Control', NO_STORE)
    throughput() {
      return this.api.throughput();
    }

    @Get('api/schedules')
    @Header('Cache-Control', NO_STORE)
    schedules() {
      return this.api.schedules();
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
    cancel(@Param('id') id: string, @Body() body: { reason?: unknown } | undefined, @Headers() headers: RequestHeaders) {
      assertActionAllowed(headers);
      return this.api.cancel(id, body?.reason);
    }

    @Post('api/runs/:id/retry')
    @HttpCode(200)
    retry(@Param('id') id: string, @Headers() headers: RequestHeaders) {
      assertActionAllowed(headers);
      return this.api.retry(id);
    }

    @Post('api/events')
    @HttpCode(200)
    sendEvent(@Body() body: { event?: unknown; key?: unknown; payload?: unknown } | undefined, @Headers() headers: RequestHeaders) {
      assertActionAllowed(headers);
      return this.api.sendEvent(body);
    }
  }
  if (guard) UseGuards(guard)(WorkflowDashboardController);
  return WorkflowDashboardController;
}

/**
 * An action (cancel, retry, send event) must come from the dashboard's own page: with its header, and not
 * from another site as the browser reports it (Sec-Fetch-Site) or as the Origin header names it.
 */
function assertActionAllowed(headers: RequestHeaders): void {
  if (header(headers, DASHBOARD_ACTION_HEADER) !== '1') {
    throw new ForbiddenException(`Dashboard actions need the header '${DASHBOARD_ACTION_HEADER}: 1' (the dashboard's page sends it).`);
  }
  const fetchSite = header(headers, 'sec-fetch-site');
  if (fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none') {
    throw new ForbiddenException(`Dashboard actions are refused from another site (Sec-Fetch-Site: ${fetchSite}): act from the dashboard's own page.`);
  }
  const origin = header(headers, 'origin');
  if (origin === undefined) return;
  const served = [header(headers, 'x-forwarded-host')?.split(',')[0].trim(), header(headers, 'host')].filter((host) => host !== undefined && host !== '');
  if (!served.includes(hostOf(origin))) {
    throw new ForbiddenException(
      `Dashboard actions are refused from another site: the request came from ${origin}, and this dashboard is served at ${served.join(' / ') || 'an unknown host'}. ` +
        `Act from the dashboard's own page; behind a proxy that rewrites the Host header, have it forward X-Forwarded-Host.`,
    );
  }
}

function header(headers: RequestHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** 'https://ops.example.com:8443' -> 'ops.example.com:8443'; '' for what is not a URL ('null', say). */
function hostOf(origin: string): string {
  try {
    return new URL(origin).host;
  } catch {
    return '';
  }
}

/**
 * Where the page is actually served: its route plus whatever the app puts before it (a global prefix set
 * with app.setGlobalPrefix, say), so that its assets and API calls go to the same place. The request's
 * path is used only when it ends with the dashboard's route, which Nest matched.
 */
function mountedPath(request: { originalUrl?: string; url?: string }, route: string): string {
  const path = (request.originalUrl ?? request.url ?? '').split('?')[0].replace(/\/+$/, '');
  return path.endsWith(route) && /^(\/[A-Za-z0-9._~-]+)+$/.test(path) ? path : route;
}
