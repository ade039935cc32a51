/**
 * TEMPORARY (removed when the domain ports themselves return promises): the promise-returning form of a
 * synchronous port, so that PostgreSQL repositories can be written against it today. Every method returns a
 * Promise of today's result; a method returning a lazy `Iterable` (not an array) returns an `AsyncIterable`.
 */
// Each test wraps R in a tuple so that a union (boolean, `X | undefined`) stays one Promise<union> instead of
// being distributed into a union of promises, which a method returning Promise<boolean> could not satisfy.
type AsyncResult<R> = [R] extends [readonly unknown[]]
  ? Promise<R>
  : [R] extends [Promise<unknown>]
    ? R
    : [R] extends [string]
      ? Promise<R>
      : [R] extends [Iterable<infer E>]
        ? AsyncIterable<E>
        : Promise<R>;

export type AsyncPort<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => AsyncResult<R> : T[K];
};
