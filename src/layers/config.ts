/**
 * @deprecated Re-exports of `src/validation.ts`, the one validation module (kept while the layer
 * files still import from here; import from `../validation` instead).
 */
export {
  check,
  finite,
  inRange,
  isBool,
  knownKeys,
  nonNegativeInt,
  oneOf,
  positive,
  positiveInt,
  validate,
} from '../validation';
export type { Check } from '../validation';
