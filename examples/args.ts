/**
 * Command-line (and form) values of the examples, checked into the types the library takes:
 * a string becomes a `BackendName` only once it is found in `BACKEND_NAMES`. Browser-safe (no
 * `node:` imports).
 */
import { BACKEND_NAMES, type BackendName } from 'blitz-ts';

/** `backendArg(value, what?) -> BackendName`: `value` if it names a backend; else an error. */
export function backendArg(value: string, what = '--backend'): BackendName {
  const name = BACKEND_NAMES.find((n) => n === value);
  if (name === undefined) {
    throw new Error(`${what} must be one of ${BACKEND_NAMES.join(', ')}, got '${value}'`);
  }
  return name;
}
