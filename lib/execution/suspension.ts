/**
 * The errors that end a handler's pending calls without failing its run: never committed anywhere.
 */

/** Ends the handler's pending calls once the run has parked or stopped. */
export class Suspended extends Error {}

/** One instance each, made once: an Error captures a stack trace when made, and every parked run used to make one. */
export const PARKED = new Suspended('parked');
export const PARKING = new Suspended('parking');

/** Ends a replay that only collects compensations, at the first step that never completed. */
export class EndOfRecords extends Error {}
