import type { INestApplication } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';
import { WorkflowClient, type RunHandle, type RunInfo, type StepInfo } from '../lib/index.js';
import type { CheckoutDto, CheckoutResult } from './orders/checkout.dto.js';
import { CatalogService } from './imports/catalog.service.js';
import { ImportCatalogWorkflow, type ImportReport } from './imports/import-catalog.workflow.js';
import { CheckoutWorkflow } from './orders/checkout.workflow.js';
import { StockService } from './orders/stock.service.js';

export interface DemoOutcome {
  orderId: string;
  runId: string;
  status: RunInfo['status'];
  output?: CheckoutResult;
  error?: string;
  steps: { name: string; status: StepInfo['status'] }[];
}

export interface DemoReport {
  outcomes: DemoOutcome[];
  /** Orders whose @OnFailure hook ran, with the error it received. */
  failureHooks: Record<string, string>;
  /** Reservations released by compensation. */
  released: string[];
  imports: ImportOutcome[];
}

export interface ImportOutcome {
  importId: string;
  runId: string;
  /** How the first execution ended. */
  firstStatus: RunInfo['status'];
  firstError?: string;
  /** After retryRun, when the first execution failed and the demo retried it. */
  retriedStatus?: RunInfo['status'];
  output?: ImportReport;
  children: { status: RunInfo['status'] }[];
}

export interface DemoOptions {
  /** Retry the import that failed during the supplier outage (default true; `sample:serve` leaves it for the dashboard). */
  retryFailedImport?: boolean;
}

/**
 * Script mode: starts a handful of checkouts (one through POST /orders, one with a card that is
 * declined), prints each step as it completes and each result; then two catalog imports that fan out
 * over child workflows, one of them hit by a supplier outage and retried. `app` must be listening.
 */
export async function runDemo(app: INestApplication, log: (line: string) => void = console.log, options: DemoOptions = {}): Promise<DemoReport> {
  const client = app.get(WorkflowClient);
  const baseUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const batch = `${Date.now().toString(36)}`;
  const orders: CheckoutDto[] = [
    { orderId: `A-${batch}`, sku: 'book', quantity: 1, amountCents: 1_999, paymentToken: 'tok_visa' },
    { orderId: `B-${batch}`, sku: 'lamp', quantity: 2, amountCents: 8_900, paymentToken: 'tok_mastercard' },
    { orderId: `C-${batch}`, sku: 'desk', quantity: 1, amountCents: 24_900, paymentToken: 'tok_declined' },
    { orderId: `D-${batch}`, sku: 'pen', quantity: 10, amountCents: 1_500, paymentToken: 'tok_visa' },
    { orderId: `E-${batch}`, sku: 'chair', quantity: 4, amountCents: 51_600, paymentToken: 'tok_visa' },
  ];

  const stock = app.get(StockService);
  await stock.stockUp(orders.map((order) => order.sku));

  // The first order goes through the HTTP API, as a browser would send it; the others through the client.
  const [viaHttp, ...direct] = orders;
  const response = await fetch(`${baseUrl}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(viaHttp),
  });
  if (response.status !== 202) throw new Error(`POST /orders answered ${response.status}: ${await response.text()}`);
  const started = (await response.json()) as { runId: string; status: string };
  log(`[${viaHttp.orderId}] POST /orders -> 202 ${JSON.stringify(started)}`);

  // Order ids are idempotency keys: emitting the same order again returns the same run.
  const handles: [CheckoutDto, RunHandle<CheckoutResult>][] = [[viaHttp, client.handle<CheckoutResult>(started.runId)]];
  for (const order of direct) {
    const handle = await client.emit(CheckoutWorkflow, order, { idempotencyKey: order.orderId });
    log(`[${order.orderId}] emitted run ${handle.id}`);
    handles.push([order, handle]);
  }

  const outcomes = await Promise.all(handles.map(([order, handle]) => follow(client, order, handle, log)));

  const viaHttpRun = await fetch(`${baseUrl}/orders/${started.runId}`);
  const run = (await viaHttpRun.json()) as RunInfo;
  log(`[${viaHttp.orderId}] GET /orders/${started.runId} -> ${viaHttpRun.status} status=${run.status}`);

  const imports = await runImports(app, batch, log, options.retryFailedImport ?? true);

  const workflow = app.get(CheckoutWorkflow);
  return {
    outcomes,
    failureHooks: Object.fromEntries(workflow.failedOrders),
    // this batch's: the shop's list keeps those of earlier sample runs on the same Redis
    released: (await stock.released()).filter((orderId) => orderId.endsWith(`-${batch}`)),
    imports,
  };
}

/**
 * Two imports, each fanning out to one child run per row plus the XML feed. The supplier is down for one
 * row of the second import: that row's child fails, so the import fails; a retry imports the row.
 */
async function runImports(app: INestApplication, batch: string, log: (line: string) => void, retryFailed: boolean): Promise<ImportOutcome[]> {
  const client = app.get(WorkflowClient);
  const feeds = [
    { importId: `spring-${batch}`, csvFile: `spring-${batch}.csv`, rows: 6, xmlFile: `spring-${batch}.xml` },
    { importId: `summer-${batch}`, csvFile: `summer-${batch}.csv`, rows: 4, xmlFile: `summer-${batch}.xml` },
  ];
  app.get(CatalogService).simulateOutageFor(`summer-${batch}-3`);

  return Promise.all(
    feeds.map(async (feed) => {
      const handle = await client.emit(ImportCatalogWorkflow, feed, { idempotencyKey: feed.importId });
      log(`[import ${feed.importId}] emitted run ${handle.id}: ${feed.rows} rows + an XML feed, each a child run`);
      const outcome: ImportOutcome = { importId: feed.importId, runId: handle.id, firstStatus: 'running', children: [] };
      try {
        outcome.output = await handle.result({ timeoutMs: 30_000 });
        outcome.firstStatus = 'succeeded';
        log(`[import ${feed.importId}] succeeded: ${JSON.stringify(outcome.output)}`);
      } catch (error) {
        outcome.firstStatus = (await handle.getState()).status;
        outcome.firstError = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        log(`[import ${feed.importId}] ${outcome.firstStatus}: ${outcome.firstError}`);
        if (retryFailed) {
          log(`[import ${feed.importId}] the supplier is back: retryRun(${handle.id})`);
          await client.retryRun(handle.id);
          try {
            outcome.output = await handle.result({ timeoutMs: 30_000 });
            log(`[import ${feed.importId}] succeeded after the retry: ${JSON.stringify(outcome.output)}`);
          } catch (retryError) {
            log(`[import ${feed.importId}] failed again: ${String(retryError)}`);
          }
          outcome.retriedStatus = (await handle.getState()).status;
        }
      }
      outcome.children = (await client.listRuns({ parentId: handle.id, limit: 100 })).runs.map((child) => ({ status: child.status }));
      return outcome;
    }),
  );
}

/** Prints the run's steps as they complete (polling every 50 ms), then its result. */
async function follow(
  client: WorkflowClient,
  order: CheckoutDto,
  handle: RunHandle<CheckoutResult>,
  log: (line: string) => void,
): Promise<DemoOutcome> {
  const printed = new Set<string>();
  let done = false;
  const printNewSteps = async () => {
    for (const step of await client.getRunSteps(handle.id)) {
      const seen = `${step.name}#${step.occurrence}:${step.status}`;
      if (printed.has(seen) || step.status === 'waiting') continue;
      printed.add(seen);
      const took = step.startedAt && step.finishedAt ? ` in ${Date.parse(step.finishedAt) - Date.parse(step.startedAt)} ms` : '';
      const detail = step.status === 'failed' ? ` (${step.error?.name}: ${step.error?.message})` : ` -> ${JSON.stringify(step.result)}`;
      log(`[${order.orderId}]   step ${step.name} ${step.status}${took}, attempts ${step.attempts}${detail}`);
    }
  };
  const poller = (async () => {
    while (!done) {
      await printNewSteps();
      await delay(50);
    }
  })();

  let output: CheckoutResult | undefined;
  let error: string | undefined;
  try {
    output = await handle.result({ timeoutMs: 30_000 });
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  done = true;
  await poller;
  await printNewSteps();

  const run = await handle.getState();
  if (output) log(`[${order.orderId}] ${run.status}: ${JSON.stringify(output)}`);
  else log(`[${order.orderId}] ${run.status} after ${run.attempt} attempt(s): ${error}`);
  const steps = (await client.getRunSteps(handle.id)).map((s) => ({ name: s.name, status: s.status }));
  return { orderId: order.orderId, runId: handle.id, status: run.status, output, error, steps };
}

/** The declined card must fail its order (and only its order) and release its stock. */
export function checkReport(report: DemoReport): string[] {
  const problems: string[] = [];
  for (const outcome of report.outcomes) {
    const declined = outcome.orderId.startsWith('C-');
    const expected = declined ? 'failed' : 'succeeded';
    if (outcome.status !== expected) problems.push(`order ${outcome.orderId} is ${outcome.status}, expected ${expected} (${outcome.error ?? ''})`);
    if (declined && !report.failureHooks[outcome.orderId]) problems.push(`@OnFailure did not run for ${outcome.orderId}`);
  }
  if (report.released.length !== 1) problems.push(`expected 1 released reservation, got ${report.released.length}`);
  for (const outcome of report.imports) {
    const hitByOutage = outcome.importId.startsWith('summer-');
    if (outcome.firstStatus !== (hitByOutage ? 'failed' : 'succeeded')) problems.push(`import ${outcome.importId} first ended ${outcome.firstStatus} (${outcome.firstError ?? ''})`);
    if (hitByOutage && outcome.retriedStatus !== undefined && outcome.retriedStatus !== 'succeeded') problems.push(`import ${outcome.importId} ended ${outcome.retriedStatus} after its retry`);
  }
  return problems;
}
