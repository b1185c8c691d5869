import { Injectable } from '@nestjs/common';
import { Workflow, type WorkflowContext, type WorkflowHandler } from '../../lib/index.js';
import { CatalogService } from './catalog.service.js';
import { ImportRowWorkflow } from './import-row.workflow.js';
import { ImportXmlWorkflow } from './import-xml.workflow.js';

export interface ImportInput {
  importId: string;
  /** The CSV feed; the sample generates `rows` rows for it. */
  csvFile: string;
  rows: number;
  /** The XML feed imported beside it. */
  xmlFile: string;
}

export interface ImportReport {
  importId: string;
  rows: number;
  created: number;
  xmlProducts: number;
}

/**
 * A fan-out, Gush style: download the feed, import every row in parallel as a child workflow with the
 * XML feed beside them, then report. The parent is parked (holding no worker slot) while the children
 * run, and is woken once when all of them are done, or as soon as one has failed.
 */
@Workflow('import-catalog', { queue: 'imports', maxAttempts: 1 })
@Injectable()
export class ImportCatalogWorkflow implements WorkflowHandler<ImportInput, ImportReport> {
  constructor(private readonly catalog: CatalogService) {}

  async execute(ctx: WorkflowContext<ImportInput>): Promise<ImportReport> {
    const { importId, csvFile, rows, xmlFile } = ctx.input;
    const products = await ctx.step.run('download', () => this.catalog.download(csvFile, rows));
    // Not a step: the latest value shows in getRun, the dashboard (a bar) and the CLI while the import runs.
    await ctx.setProgress({ done: 1, total: 3, stage: 'rows and XML' });

    const [imported, xml] = await Promise.all([
      Promise.all(products.map((row) => ctx.step.runWorkflow(`import-row:${row.sku}`, ImportRowWorkflow, { source: csvFile, row }))),
      ctx.step.runWorkflow('import-xml', ImportXmlWorkflow, { file: xmlFile }),
    ]);

    await ctx.setProgress({ done: 2, total: 3, stage: 'report' });
    const report = await ctx.step.run('report', () => ({
      importId,
      rows: imported.length,
      created: imported.filter((row) => row.created).length,
      xmlProducts: xml.products,
    }));
    await ctx.setProgress({ done: 3, total: 3, stage: 'done' });
    return report;
  }
}
