import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext, type WorkflowHandler } from '../../lib/index.js';
import { CatalogService, type ProductRow } from './catalog.service.js';

export interface ImportRowInput {
  source: string;
  row: ProductRow;
}

/** One product row: a child run of its import, so each row is retried, inspected and timed on its own. */
@Workflow('import-row', { queue: 'imports', maxAttempts: 1 })
@Injectable()
export class ImportRowWorkflow implements WorkflowHandler<ImportRowInput, { sku: string; priceCents: number; created: boolean }> {
  constructor(private readonly catalog: CatalogService) {}

  async execute(ctx: WorkflowContext<ImportRowInput>) {
    const { row, source } = ctx.input;
    const priceCents = await this.catalog.supplierPrice(row);
    const { created } = await ctx.step.run('upsert-product', () => this.catalog.upsert({ ...row, priceCents }, source));
    return { sku: row.sku, priceCents, created };
  }
}
