import { Injectable } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';
import { Step, currentStep } from '../../lib/index.js';

export interface ProductRow {
  sku: string;
  name: string;
  priceCents: number;
}

/** The supplier's API did not answer: worth retrying once it is back. */
export class SupplierUnavailableError extends Error {
  override name = 'SupplierUnavailableError';
}

/** A simulated product catalog and the supplier feeds it imports from. */
@Injectable()
export class CatalogService {
  /** Products imported, by SKU. */
  readonly products = new Map<string, ProductRow & { source: string }>();
  /** SKUs whose next supplier price lookups fail, with how many: a short outage that a later retry gets past. */
  private readonly outages = new Map<string, number>();

  /** The next `calls` price lookups for this SKU fail (by default: both attempts of the step). */
  simulateOutageFor(sku: string, calls = 2): void {
    this.outages.set(sku, calls);
  }

  /** The rows of a CSV feed (generated: the sample has no files to download). */
  async download(file: string, rows: number): Promise<ProductRow[]> {
    await delay(20);
    const stem = file.replace(/\.[a-z]+$/i, '');
    return Array.from({ length: rows }, (_, i) => ({ sku: `${stem}-${i + 1}`, name: `${stem} item ${i + 1}`, priceCents: 500 + 250 * i }));
  }

  /** A durable step: the supplier's current price; its stored result is reused when the run replays. */
  @Step({ name: 'fetch-supplier-price', retries: 1, backoff: { type: 'fixed', delayMs: 20 } })
  async supplierPrice(row: ProductRow): Promise<number> {
    await delay(10 + Math.random() * 30);
    const failuresLeft = this.outages.get(row.sku) ?? 0;
    if (failuresLeft > 0) {
      this.outages.set(row.sku, failuresLeft - 1);
      throw new SupplierUnavailableError(`The supplier API did not answer for ${row.sku} (attempt ${currentStep()?.attempt ?? 1}); retry the import once it is back.`);
    }
    return row.priceCents + 99;
  }

  async upsert(row: ProductRow, source: string): Promise<{ sku: string; created: boolean }> {
    await delay(5);
    const created = !this.products.has(row.sku);
    this.products.set(row.sku, { ...row, source });
    return { sku: row.sku, created };
  }

  /** Parses the XML feed that comes beside the CSV one (generated too). */
  async parseXml(file: string): Promise<ProductRow[]> {
    await delay(30);
    const stem = file.replace(/\.[a-z]+$/i, '');
    return [1, 2].map((i) => ({ sku: `${stem}-x${i}`, name: `${stem} bundle ${i}`, priceCents: 4_900 * i }));
  }
}
