/**
 * TEMPORARY (removed when the domain ports themselves return promises): the promise-returning form of a
 * synchronous port, so that PostgreSQL repositories can be written against it today. Every method returns a
 * Promise of today's result; a method returning a lazy `Iterable` (not an array) returns an `AsyncIterable`.
 */
// Tuple-wrapped so that a union result (`T | undefined`, `boolean`) maps as a whole, not member by member.
type AsyncResult<R> = [R] extends [readonly unknown[]]
  ? Promise<R>
  : [R] extends [Promise<unknown>]
    ? R
    : [R] extends [string | Uint8Array]
      ? Promise<R>
      : [R] extends [Iterable<infer E>]
        ? AsyncIterable<E>
        : Promise<R>;

export type AsyncPort<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => AsyncResult<R> : T[K];
};
