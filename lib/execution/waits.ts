import { storedResult } from './journal.js';
import { InvalidArgumentError } from '../errors/workflow.errors.js';
import type { WaitForEventOptions } from '../interfaces/workflow.interfaces.js';
import { asStoredText } from '../redis/keys.js';
import type { EventThreshold } from '../redis/workflow-store.js';
import { checkDuration, checkEvent, quoteName } from './call-limits.js';
import type { ExecutionState } from './execution-state.js';
import { encodeStepRecord, type RecordState, type StoredStep } from './step-record.js';
import { EndOfRecords } from './suspension.js';

/**
 * The handler's durable waits on time and on events: ctx.step.sleep, sleepUntil and waitForEvent. A wait
 * that is not over is handed to Parking; the run parks and is brought back by a timer or a delivery.
 * (Children are waits too: children.ts.) Made on the first wait of an execution.
 */
export class Waits {
  /** (event, key) -> the log position of the event the run's last wait for them received. */
  private readonly eventThresholds = new Map<string, number>();

  constructor(private readonly run: ExecutionState) {}

  /** Where the run's next wait for (event, key) starts in their log (see EventThreshold). */
  eventThresholdFor(event: string, key: string): EventThreshold {
    const position = this.eventThresholds.get(`${event}\u0000${key}`);
    return position === undefined ? { runCreatedAt: this.run.claim.createdAt } : { position };
  }

  /** The run's last wait for (event, key) received the event at `position` (waitForAny's, say). */
  keepEventThreshold(event: string, key: string, position: number): void {
    this.eventThresholds.set(`${event}\u0000${key}`, position);
  }

  /** `describeWait`: checks the argument (before anything is counted or written) and gives the wait's spec. */
  sleep(name: string, describeWait: () => string): Promise<void> {
    let spec: string;
    try {
      spec = describeWait();
    } catch (error) {
      return Promise.reject(error);
    }
    const run = this.run;
    run.assertExecuting();
    return this.sleepAt(run.journal.nextField(name), spec);
  }

  /** A sleep's decision at its field: over, or the run waits (again, after a warm resume). */
  private sleepAt(field: string, spec: string): Promise<void> {
    const run = this.run;
    const stored = run.journal.steps.get(field);
    if (stored) {
      run.journal.assertSameStep(stored, 'sleep', '');
      if (stored.state !== 'W' || (stored.record.u ?? 0) <= run.serverNow()) return Promise.resolve();
    }
    return run.parking.waitFor({ kind: 'sleep', field, spec }, () => this.sleepAt(field, spec));
  }

  async waitForEvent(name: string, opts: WaitForEventOptions): Promise<unknown> {
    const run = this.run;
    run.assertExecuting();
    if (!opts || typeof opts !== 'object') throw new InvalidArgumentError(`waitForEvent(${quoteName(name)}) needs { event: string, key?: string, timeoutMs?: number }.`);
    const { key } = checkEvent(opts.event, opts.key, () => `waitForEvent(${quoteName(name)})`);
    if (opts.timeoutMs !== undefined) checkDuration(opts.timeoutMs, () => `waitForEvent(${quoteName(name)}): timeoutMs`);
    const field = run.journal.nextField(name);
    // as the records the library writes name the event (a lone surrogate in it arrives as U+FFFD)
    const fingerprint = `event:${asStoredText(opts.event)}`;
    const stored = run.journal.steps.get(field);
    if (stored) {
      run.journal.assertSameStep(stored, 'event', fingerprint, stored.record.ev === undefined ? undefined : `event:${stored.record.ev}`);
      if (stored.state === 'S' || stored.state === 'W') return this.storedEvent(field, opts, key, fingerprint, stored);
    }
    if (run.mode === 'collect') throw new EndOfRecords();
    const streamKey = `${opts.event}\u0000${key}`;
    const resolved = (s: StoredStep) => this.eventResult(streamKey, s);
    const position = this.eventThresholds.get(streamKey);
    const after: EventThreshold = position === undefined ? { runCreatedAt: run.claim.createdAt } : { position };
    const matched = await run.parking.track(async () => {
      await run.commits.flush();
      return run.store.waitEvent(opts.event, key, run.id, field, after, run.settings.shardRoot);
    });
    if (matched !== undefined) {
      const record = matched.slice(0, -1) + `,"f":${JSON.stringify(fingerprint)},"n":${run.journal.position(field)}}`;
      return resolved(await run.parking.track(() => this.resolveOpenWait(field, 'S', record)));
    }
    return this.waitForStoredEvent(field, opts, key, fingerprint);
  }

  /** An event wait whose field has a record: its event, its timeout, or the run waits (again). */
  private async storedEvent(field: string, opts: WaitForEventOptions, key: string, fingerprint: string, stored: StoredStep): Promise<unknown> {
    const run = this.run;
    const streamKey = `${opts.event}\u0000${key}`;
    run.journal.assertSameStep(stored, 'event', fingerprint, stored.record.ev === undefined ? undefined : `event:${stored.record.ev}`);
    if (stored.state === 'S') return this.eventResult(streamKey, stored);
    if (run.mode === 'collect') throw new EndOfRecords();
    if (stored.state === 'W') {
      if (stored.record.dl !== undefined && stored.record.dl <= run.serverNow()) {
        // A wait that timed out received no event, so the next one goes on from the same place in the log
        // (no 'th'): an event whose delivery lost the race with the timeout is not missed.
        const record = encodeStepRecord({ k: 'event', f: fingerprint, s: 'succeeded', n: run.journal.position(field), ev: opts.event, key }, 'null');
        return this.eventResult(streamKey, await this.resolveOpenWait(field, 'S', record));
      }
    }
    return this.waitForStoredEvent(field, opts, key, fingerprint);
  }

  private waitForStoredEvent(field: string, opts: WaitForEventOptions, key: string, fingerprint: string): Promise<unknown> {
    return this.run.parking.waitFor({ kind: 'event', field, event: opts.event, key, timeoutMs: opts.timeoutMs }, () => {
      // the park wrote a waiting record, so a warm claim brings the field's record
      const stored = this.run.journal.steps.get(field);
      return stored ? this.storedEvent(field, opts, key, fingerprint, stored) : this.waitForStoredEvent(field, opts, key, fingerprint);
    });
  }

  private eventResult(streamKey: string, s: StoredStep): unknown {
    if (s.record.th !== undefined) this.eventThresholds.set(streamKey, s.record.th);
    return s.record.r === undefined ? null : storedResult(s);
  }

  /** Resolves a wait unless a delivery resolved it first; returns the record that stands. */
  resolveOpenWait(field: string, state: RecordState, record: string): Promise<StoredStep> {
    const run = this.run;
    return run.commits.commit(field, state, record, { ifOpen: true }).then((stored) => {
      const eventId = stored.record.rp;
      if (eventId === undefined) return stored;
      // the delivery that got there first named the event's payload instead of carrying it
      return run.store.readSharedPayload(run.shard, eventId).then((payload) => {
        if (payload !== null) stored.record.r = JSON.parse(payload);
        return stored;
      });
    });
  }
}
