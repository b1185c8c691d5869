import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext, type WorkflowHandler } from '../../lib/index.js';
import { CatalogService } from './catalog.service.js';

/** The XML feed that comes with each import, imported beside the CSV rows. */
@Workflow('import-xml', { queue: 'imports', maxAttempts: 2 })
@Injectable()
export class ImportXmlWorkflow implements WorkflowHandler<{ file: string }, { products: number }> {
  constructor(private readonly catalog: CatalogService) {}

  async execute(ctx: WorkflowContext<{ file: string }>) {
    const rows = await ctx.step.run('parse-xml', () => this.catalog.parseXml(ctx.input.file));
    await ctx.step.run('upsert-bundles', () => Promise.all(rows.map((row) => this.catalog.upsert(row, ctx.input.file))));
    return { products: rows.length };
  }
}
